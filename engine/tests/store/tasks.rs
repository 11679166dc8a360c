//! Acting on suggestions runs their action through policy as a task; approvals are decided
//! once, expire without ever running, survive restarts; every step is in the audit log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use loopgate_engine::actions::{ApprovalState, DecideError, Executed, Executor, Task, TaskState, Verdict};
use loopgate_engine::intelligence::Intelligence;
use loopgate_engine::suggestion::{Claimant, Responder, Response, Suggestion, SuggestionState};
use loopgate_engine::{Clock, Retention};

use crate::intelligence::{question, said, settings};
use crate::{Db, Harness, harness};

crate::conformance!(
    acting_runs_the_action_through_policy_and_everything_is_audited,
    an_approval_is_decided_once_runs_its_task_once_and_survives_a_restart,
    denied_and_expired_approvals_never_run,
    a_task_interrupted_by_a_crash_is_failed_not_repeated,
    the_kill_switch_holds_tasks_until_resume,
    an_approval_left_waiting_is_raised_by_reflection,
);

/// Counts what it runs; succeeds with where it "sent".
#[derive(Default)]
struct Counting(AtomicUsize);

impl Executor for Counting {
    fn execute<'a>(
        &'a self,
        task: &'a Task,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Executed, String>> + Send + 'a>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let target = task.target.clone();
        Box::pin(async move { Ok(Executed::Done(serde_json::json!({"sent_to": target}))) })
    }
}

fn owner() -> Responder {
    Responder { by: "owner".into(), via: "test".into() }
}

/// Acting on a reply with the owner's words (a reply raised without them sends nothing).
fn with_words(question: &Suggestion) -> Response {
    let action =
        loopgate_engine::suggestion::edited_action(&question.action, &serde_json::json!("On my way.")).unwrap();
    Response::Edit { action }
}

/// A reminder without a time (acting notes it done: allowed) and a question to the owner
/// (acting replies: a message, which asks first).
async fn setup(h: &Harness, dir: &std::path::Path) -> (Arc<Intelligence>, Arc<Counting>, Suggestion, Suggestion) {
    let counting = Arc::new(Counting::default());
    let intel = Intelligence::with_executor(h.store.clone(), settings(dir), counting.clone());
    let now = h.clock.now();
    h.store.ingest(said("r", "me", true, "notes", now, "remind me to call the plumber")).await.unwrap();
    h.store.ingest(question("q", "ana", now)).await.unwrap();
    intel.pulse(true).await.unwrap();
    let active = h.store.suggestions(&[SuggestionState::Active], 10).await.unwrap();
    let find = |class: &str| active.iter().find(|s| s.class == class).cloned().expect(class);
    let (reminder, question) = (find("reminder"), find("unanswered_question"));
    (intel, counting, reminder, question)
}

async fn acting_runs_the_action_through_policy_and_everything_is_audited(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (intel, counting, reminder, question) = setup(&h, dir.path()).await;

    // Allowed: the note runs at once.
    let acted = intel.respond(reminder.id, &Response::Act, &owner()).await.unwrap();
    let task = acted.task.expect("acting creates a task");
    assert_eq!(
        (task.state, task.kind.as_str(), task.origin.clone()),
        (TaskState::Succeeded, "note", format!("suggestion:{}", reminder.id))
    );
    let states: Vec<_> = task.timeline.iter().map(|e| e.state).collect();
    assert_eq!(states, [TaskState::Queued, TaskState::Running, TaskState::Succeeded]);
    let memory_id = task.output.unwrap()["memory_id"].as_i64().unwrap();
    assert_eq!(h.store.get_memory(memory_id).await.unwrap().unwrap().content, "Done: call the plumber");

    // Asks: the reply waits for an approval that expires in a day.
    let edited = Response::Edit {
        action: serde_json::json!({"kind": "message", "target": {"channel": "telegram", "conversation": "ana"}, "text": "Checked, all fine"}),
    };
    let task = intel.respond(question.id, &edited, &owner()).await.unwrap().task.unwrap();
    assert_eq!((task.state, task.target.as_str()), (TaskState::AwaitingApproval, "telegram:ana"));
    assert_eq!(task.action["text"], "Checked, all fine", "the edited action is what waits");
    let approval = h.store.approval(task.approval_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(approval.state, ApprovalState::Pending);
    assert_eq!(approval.expires_at, h.clock.now() + Duration::hours(24));
    assert_eq!(counting.0.load(Ordering::SeqCst), 0, "nothing left the machine");

    // Snoozing and dismissing run nothing.
    assert!(h.store.tasks(&[], 10).await.unwrap().len() == 2);

    let log = h.store.audit_log(50).await.unwrap();
    let events: Vec<&str> = log.iter().rev().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "suggestion.acted",
            "task.created",
            "task.succeeded",
            "suggestion.edited",
            "task.created",
            "approval.requested"
        ]
    );
    assert_eq!(log.last().unwrap().actor, "owner");
}

async fn an_approval_is_decided_once_runs_its_task_once_and_survives_a_restart(db: Db) {
    let mut h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (intel, _, _, question) = setup(&h, dir.path()).await;
    let task = intel.respond(question.id, &with_words(&question), &owner()).await.unwrap().task.unwrap();
    let approval_id = task.approval_id.unwrap();

    // A restart while it waits: still pending, still decidable.
    drop(intel);
    h.reopen().await;
    let counting = Arc::new(Counting::default());
    let intel = Intelligence::with_executor(h.store.clone(), settings(dir.path()), counting.clone());
    assert_eq!(h.store.approvals(&[ApprovalState::Pending], 10).await.unwrap().len(), 1);

    let mut racers = Vec::new();
    for n in 0..8 {
        let intel = intel.clone();
        racers.push(tokio::spawn(async move {
            let who = Responder { by: format!("surface{n}"), via: "race".into() };
            intel.decide(approval_id, if n % 2 == 0 { Verdict::Approve } else { Verdict::Deny }, &who).await
        }));
    }
    let mut wins = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            Ok((approval, task)) => wins.push((approval, task)),
            Err(DecideError::AlreadyDecided { decision, .. }) => assert!(decision.is_some()),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(wins.len(), 1, "the first decision wins");
    let (approval, task) = &wins[0];
    let ran = usize::from(approval.state == ApprovalState::Approved);
    assert_eq!(counting.0.load(Ordering::SeqCst), ran, "an approved task runs exactly once, a denied one never");
    if ran == 1 {
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!(task.output.as_ref().unwrap()["sent_to"], "telegram:ana");
    } else {
        assert_eq!(task.state, TaskState::Cancelled);
    }
    let late = intel.decide(approval_id, Verdict::Approve, &owner()).await.unwrap_err();
    assert!(
        late.to_string().starts_with(&format!("already decided: {} via race by surface", approval.state)),
        "{late}"
    );
}

async fn denied_and_expired_approvals_never_run(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (intel, counting, _, question) = setup(&h, dir.path()).await;
    let first = intel.respond(question.id, &with_words(&question), &owner()).await.unwrap().task.unwrap();
    let approval_id = first.approval_id.unwrap();
    // From a chat, only someone allowed to answer may decide; anyone else changes nothing.
    let stranger = Claimant { channel: "telegram".into(), user_id: "666".into(), name: Some("Mallory".into()) };
    let refused = intel.decide_from(approval_id, Verdict::Approve, &stranger).await.unwrap_err();
    assert!(matches!(refused, DecideError::Unauthorized { .. }), "{refused}");
    assert_eq!(h.store.approval(approval_id).await.unwrap().unwrap().state, ApprovalState::Pending);
    assert_eq!(counting.0.load(Ordering::SeqCst), 0);
    let mut allowed = settings(dir.path());
    allowed.answerers = loopgate_policies::Identities::new(["100".to_owned()], [], []);
    let owner_chat = Intelligence::with_executor(h.store.clone(), allowed, counting.clone());
    let me = Claimant { channel: "telegram".into(), user_id: "100".into(), name: Some("Ana".into()) };
    let (approval, task) = owner_chat.decide_from(approval_id, Verdict::Deny, &me).await.unwrap();
    assert_eq!((approval.state, task.state), (ApprovalState::Denied, TaskState::Cancelled));
    let decision = approval.decision.unwrap();
    assert_eq!((decision.by.as_str(), decision.via.as_str()), ("Ana", "telegram"));

    // Two more requests through the API path; nobody answers one, the other is answered
    // too late.
    let action = serde_json::json!({"kind": "webhook", "endpoint": "deploy", "payload": {"v": 2}});
    let quiet = intel.submit(&action, "deploy v2", &owner()).await.unwrap();
    let late = intel.submit(&action, "deploy v3", &owner()).await.unwrap();
    assert_eq!(quiet.state, TaskState::AwaitingApproval);
    h.clock.advance(Duration::hours(25));
    let expired = intel.decide(late.approval_id.unwrap(), Verdict::Approve, &owner()).await.unwrap_err();
    assert!(matches!(expired, DecideError::AlreadyDecided { state: ApprovalState::Expired, .. }), "{expired}");
    let report = intel.pulse(false).await.unwrap();
    assert_eq!(report.upkeep.approvals_expired, [quiet.approval_id.unwrap()]);
    for id in [quiet.id, late.id] {
        let task = h.store.task(id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Cancelled);
        assert!(task.error.unwrap().contains("expired"));
    }
    assert_eq!(counting.0.load(Ordering::SeqCst), 0, "nothing ran");

    // Bad actions are refused before anything is written.
    for bad in [serde_json::json!({"kind": "shell", "command": "rm -rf /"}), serde_json::json!("deploy")] {
        assert!(intel.submit(&bad, "x", &owner()).await.is_err());
    }
    assert_eq!(h.store.tasks(&[], 50).await.unwrap().len(), 3);
}

async fn a_task_interrupted_by_a_crash_is_failed_not_repeated(db: Db) {
    let mut h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting::default());
    let mut config = settings(dir.path());
    config.policy = loopgate_policies::Policy::new(vec![loopgate_policies::Rule {
        effect: loopgate_policies::Effect::Allow,
        kind: Some(loopgate_policies::ActionKind::Webhook),
        target: Some("backup".into()),
        min_risk: None,
    }]);
    let intel = Intelligence::with_executor(h.store.clone(), config.clone(), counting.clone());
    let action = serde_json::json!({"kind": "webhook", "endpoint": "backup"});
    let done = intel.submit(&action, "nightly", &owner()).await.unwrap();
    assert_eq!((done.state, done.policy), (TaskState::Succeeded, loopgate_policies::Effect::Allow));
    // The next one is marked running, then the process dies before it finishes.
    let again = loopgate_engine::actions::NewTask { reason: "nightly again".into(), ..task_like(&done, h.clock.now()) };
    let stuck = h.store.record_task(&again).await.unwrap();
    h.store.start_task(stuck.id).await.unwrap().unwrap();
    drop(intel);
    h.reopen().await;
    let intel = Intelligence::with_executor(h.store.clone(), config, counting.clone());
    assert_eq!(intel.recover_tasks().await.unwrap(), [stuck.id]);
    intel.pulse(false).await.unwrap();
    let task = h.store.task(stuck.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert!(task.error.unwrap().contains("not run again"));
    assert_eq!(counting.0.load(Ordering::SeqCst), 1, "only the first ran");
}

fn task_like(task: &Task, now: chrono::DateTime<chrono::Utc>) -> loopgate_engine::actions::NewTask {
    loopgate_engine::actions::NewTask {
        action: task.action.clone(),
        kind: task.kind.clone(),
        target: task.target.clone(),
        reason: task.reason.clone(),
        origin: task.origin.clone(),
        requested_by: task.requested_by.clone(),
        requested_via: task.requested_via.clone(),
        risk: task.risk,
        policy: task.policy,
        policy_reason: task.policy_reason.clone(),
        approval_expires_at: now + Duration::hours(24),
    }
}

async fn the_kill_switch_holds_tasks_until_resume(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (intel, _, reminder, _) = setup(&h, dir.path()).await;
    intel.set_paused(true).await.unwrap();
    let task = intel.respond(reminder.id, &Response::Act, &owner()).await.unwrap().task.unwrap();
    assert_eq!(task.state, TaskState::Queued, "stopped: no side effect");
    intel.pulse(false).await.unwrap();
    assert_eq!(h.store.task(task.id).await.unwrap().unwrap().state, TaskState::Queued);
    intel.set_paused(false).await.unwrap();
    let report = intel.pulse(false).await.unwrap();
    assert_eq!(report.upkeep.tasks_run, [task.id]);
    assert_eq!(h.store.task(task.id).await.unwrap().unwrap().state, TaskState::Succeeded);
}

async fn an_approval_left_waiting_is_raised_by_reflection(db: Db) {
    let h = harness(db, Retention::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (intel, _, _, question) = setup(&h, dir.path()).await;
    let task = intel.respond(question.id, &with_words(&question), &owner()).await.unwrap().task.unwrap();
    intel.pulse(true).await.unwrap();
    let raised = |list: Vec<Suggestion>| list.into_iter().filter(|s| s.class == "ageing_approval").collect::<Vec<_>>();
    assert!(raised(h.store.suggestions(&[], 50).await.unwrap()).is_empty(), "fresh approvals are not nagged about");

    h.clock.advance(Duration::hours(5));
    intel.pulse(true).await.unwrap();
    let ageing = raised(h.store.suggestions(&[SuggestionState::Active], 50).await.unwrap());
    assert_eq!(ageing.len(), 1);
    assert_eq!(ageing[0].title, "Waiting for your approval: message to telegram:ana: “On my way.”");
    assert!(ageing[0].why_now.contains("expires in 19 hours"), "{}", ageing[0].why_now);
    assert_eq!(ageing[0].expires_at, task.created_at + Duration::hours(24), "gone when the approval is");
    assert_eq!(ageing[0].key, format!("approval:{}", task.approval_id.unwrap()));

    // Deciding the approval retires the reminder, and channels hear of it.
    intel.decide(task.approval_id.unwrap(), Verdict::Deny, &owner()).await.unwrap();
    let retired = h.store.suggestion(ageing[0].id).await.unwrap().unwrap();
    assert_eq!(retired.state, SuggestionState::Superseded);
    let events = h.store.deliveries("any", 100).await.unwrap();
    assert!(events.iter().any(|e| e.suggestion.id == retired.id && e.kind.as_str() == "update"), "{events:?}");
}
