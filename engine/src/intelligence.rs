//! Workflow intelligence, wired: the heartbeat reads what is new, decides, and when it
//! should, runs a reflection whose decision becomes suggestions; upkeep brings back what is
//! due and retires what went stale; answers go through [`Intelligence::respond`].
//!
//! One pulse at a time (the timer and a manual pulse may race): a lock serializes them, so
//! the heartbeat's cursor and counters are read and written by one pulse only.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use serde::Serialize;
use tokio::sync::Mutex;

use loopgate_policies::{Identities, Policy};

use crate::actions::{Executor, NothingConfigured};
use crate::heartbeat::{self, Outcome, Pending, Rules};
use crate::learning::{self, HeldKey, Ranking, RankingDetail, Weights};
use crate::memory::{MemoryCandidate, MemoryKind, Origin, Rejection, RememberOutcome};
use crate::reflect::detect::{self, Context, Idea, IdeaKind};
use crate::reflect::habits;
use crate::reflect::run::{self, Critique, Evidence, Judging, Ranked};
use crate::signal::{Signal, SignalId};
use crate::store::{HeartbeatRecord, MemoryQuery, NewSuggestion, RunRecord, SignalQuery, Store, StoreError, Upkeep};
use crate::suggestion::{
    Claimant, EvidenceLine, RespondError, Responded, Responder, Response, Suggestion, SuggestionId, SuggestionState,
};

/// Weeks of the owner's own signals a reflection reads for weekly habits.
const HABIT_WEEKS: i64 = 4;
/// Most of the owner's own signals read for habits.
const MAX_HISTORY: u32 = 3_000;
/// New signals one pulse reads at most; the rest wait for the next pulse.
const MAX_READ_PER_PULSE: usize = 10_000;
const READ_PAGE: u32 = 1_000;
/// Where the last successful reflection stopped reading (`channel_state`): the actionable
/// signals after it are in the next reflection's evidence whatever else arrived.
const REFLECTED: (&str, &str) = ("heartbeat", "reflected_seq");
/// Most actionable signals a reflection always takes (newest first), and how many signals
/// it scans to find them.
const MAX_ACTIONABLE_EVIDENCE: usize = 500;
const MAX_EVIDENCE_SCAN: i64 = 100_000;
/// The recent window shared fairly between sources and conversations, in multiples of
/// `max_evidence`.
const WINDOW_FACTOR: u32 = 4;

#[derive(Debug, Clone)]
pub struct Settings {
    pub rules: Rules,
    /// How long a question may wait before it counts as unanswered.
    pub answer_grace: Duration,
    /// How far back a reflection looks.
    pub lookback: Duration,
    /// Most signals one reflection looks at.
    pub max_evidence: u32,
    /// Most suggestions open for the owner at once.
    pub max_active: usize,
    /// How long a suggestion stays up (from when it is shown) before it expires.
    pub expires_after: Duration,
    /// How long a surfaced suggestion may go unanswered before it counts as ignored.
    pub ignore_after: Duration,
    /// Where reflection artifacts are written.
    pub data_dir: PathBuf,
    /// The owner's action rules: critique classifies every idea's risk by them and drops
    /// ideas whose action they deny.
    pub policy: Policy,
    /// Who may answer from a chat channel: the owner's accounts and those allowed.
    pub answerers: Identities,
    /// How long an approval waits for a decision before it expires (and its task is
    /// cancelled, never run).
    pub approvals_expire: Duration,
    /// How long a pending approval waits before reflection raises it as ageing.
    pub approval_ageing: Duration,
    /// When a new suggestion may become a task without the owner pressing Act.
    pub auto_create: loopgate_policies::AutoCreate,
    /// Tokens the model may use per day (UTC); 0 is no limit.
    pub daily_token_budget: u64,
}

impl Settings {
    pub fn new(rules: Rules, data_dir: PathBuf) -> Settings {
        Settings {
            rules,
            answer_grace: Duration::hours(2),
            lookback: Duration::days(7),
            max_evidence: 1000,
            max_active: 10,
            expires_after: Duration::days(3),
            ignore_after: Duration::hours(48),
            data_dir,
            policy: Policy::empty(),
            auto_create: loopgate_policies::AutoCreate::default(),
            daily_token_budget: 0,
            answerers: Identities::default(),
            approvals_expire: Duration::hours(24),
            approval_ageing: Duration::hours(4),
        }
    }
}

/// What one pulse did.
#[derive(Debug, Clone, Serialize)]
pub struct PulseReport {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The reflection it ran, if any.
    pub run_id: Option<String>,
    /// New signals read since the previous pulse.
    pub read: usize,
    /// Suggestions the reflection created.
    pub created: Vec<SuggestionId>,
    pub upkeep: Upkeep,
}

/// What `GET /api/heartbeat` shows.
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatStatus {
    pub last_pulse_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<serde_json::Value>,
    pub last_run_id: Option<String>,
    pub last_reflection_at: Option<DateTime<Utc>>,
    pub last_reflection_failed: bool,
    /// When the timer will next pulse (`None` when it has not started).
    pub next_pulse_at: Option<DateTime<Utc>>,
    /// When the next scheduled or snoozed suggestion comes due.
    pub next_due_at: Option<DateTime<Utc>>,
    /// When a question the last reflection saw becomes unanswered.
    pub next_followup_at: Option<DateTime<Utc>>,
    pub reflections_today: i64,
    pub budget_left: i64,
    pub paused: bool,
    /// Signals read since the last reflection that did not justify one yet.
    pub carried_signals: i64,
    pub carried_actionable: i64,
    pub signal_cursor: i64,
}

pub struct Intelligence {
    pub(crate) store: Store,
    pub(crate) settings: Settings,
    pulse_lock: Mutex<()>,
    next_pulse_at: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Runs actions with an outside effect (see [`crate::tasks`]).
    pub(crate) executor: Arc<dyn Executor>,
    /// The owner's model, when one is configured (see [`crate::model`]).
    model: std::sync::OnceLock<Arc<dyn crate::model::Model>>,
    /// Nudged when something got a time (a reminder set, moved or cancelled), so the
    /// heartbeat's due timer is re-armed at once rather than at its next look.
    due: tokio::sync::Notify,
}

impl Intelligence {
    /// Without anything configured to run messages, webhooks or commands.
    pub fn new(store: Store, settings: Settings) -> Arc<Intelligence> {
        Intelligence::with_executor(store, settings, Arc::new(NothingConfigured))
    }

    pub fn with_executor(store: Store, settings: Settings, executor: Arc<dyn Executor>) -> Arc<Intelligence> {
        Arc::new(Intelligence {
            store,
            settings,
            pulse_lock: Mutex::new(()),
            next_pulse_at: Default::default(),
            due: tokio::sync::Notify::new(),
            executor,
            model: std::sync::OnceLock::new(),
        })
    }

    /// Gives the engine the owner's model (once, at start).
    pub fn use_model(&self, model: Arc<dyn crate::model::Model>) {
        let _ = self.model.set(model);
    }

    pub fn model(&self) -> Option<&Arc<dyn crate::model::Model>> {
        self.model.get()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Wakes whoever waits in [`Intelligence::due_changed_wait`]: a time was set or moved.
    pub fn due_changed(&self) {
        self.due.notify_waiters();
        self.due.notify_one();
    }

    /// Resolves when a time was set or moved since (or just before) the call.
    pub async fn due_changed_wait(&self) {
        self.due.notified().await;
    }

    /// Brings back what is due now — reminders the owner asked for, snoozes they chose,
    /// promises with a deadline — at its time: quiet hours, cooldown and budget hold back
    /// only inferred work, and these times were set by the owner. Nothing moves while the
    /// kill switch is on. Returns the suggestions that came due.
    pub async fn release_due(&self) -> Result<Vec<SuggestionId>, StoreError> {
        if self.store.heartbeat_state().await?.paused {
            return Ok(Vec::new());
        }
        let settings = &self.settings;
        let upkeep =
            self.store.upkeep(settings.rules.timezone, settings.expires_after, settings.ignore_after, true).await?;
        if !upkeep.came_due.is_empty() {
            tracing::info!(came_due = ?upkeep.came_due, "due at their time");
        }
        Ok(upkeep.came_due)
    }

    /// Told by the timer, for the status.
    pub fn set_next_pulse(&self, at: Option<DateTime<Utc>>) {
        *self.next_pulse_at.lock().expect("next pulse lock") = at;
    }

    fn now(&self) -> DateTime<Utc> {
        self.store.clock().now()
    }

    /// One heartbeat: read what is new, decide, act on the decision. `manual` is a pulse run
    /// by hand: it skips cooldown, budget and quiet hours, never the kill switch.
    #[tracing::instrument(skip(self), fields(outcome))]
    pub async fn pulse(&self, manual: bool) -> Result<PulseReport, StoreError> {
        let _one_at_a_time = self.pulse_lock.lock().await;
        let now = self.now();
        let rules = &self.settings.rules;
        let mut state = self.store.heartbeat_state().await?;
        let today = now.with_timezone(&rules.timezone).date_naive();
        if state.budget_day != Some(today) {
            state.budget_day = Some(today);
            state.reflections_today = 0;
        }

        let (read, actionable) = self.read_new(&mut state).await?;
        state.carried_new += read as i64;
        state.carried_actionable += actionable as i64;
        let due_items = self.store.count_due(now).await? as usize;
        let pending = Pending {
            new_signals: state.carried_new as usize,
            actionable: state.carried_actionable as usize,
            followups_due: usize::from(state.next_followup_at.is_some_and(|at| at <= now)),
            due_items,
        };
        let beat = heartbeat::State {
            last_reflection_at: state.last_reflection_at,
            last_reflection_failed: state.last_reflection_failed,
            reflections_today: state.reflections_today as u32,
            paused: state.paused,
        };
        let outcome = heartbeat::decide(rules, &beat, pending, now, manual);
        tracing::Span::current().record("outcome", tracing::field::debug(&outcome));

        let settings = &self.settings;
        let mut report =
            PulseReport { outcome: outcome.clone(), run_id: None, read, created: vec![], upkeep: Upkeep::default() };
        // Expiry and staleness need no quiet hours; bringing things back needs a pulse that
        // may show them. While paused, nothing changes at all.
        let bring_back = matches!(outcome, Outcome::Reflect { .. } | Outcome::Dispatch { .. });
        if bring_back || !state.paused {
            report.upkeep =
                self.store.upkeep(rules.timezone, settings.expires_after, settings.ignore_after, bring_back).await?;
        }
        let (expired, ran) = self.task_upkeep(state.paused).await?;
        report.upkeep.approvals_expired = expired;
        report.upkeep.tasks_run = ran;
        if let Outcome::Reflect { reason } = &outcome {
            let trigger = if manual { "manual" } else { "heartbeat" };
            let (run_id, result) = self.reflect(trigger, reason, &report.upkeep).await?;
            report.run_id = Some(run_id.clone());
            state.last_run_id = Some(run_id);
            state.last_reflection_at = Some(now);
            state.reflections_today += 1;
            match result {
                Ok(reflected) => {
                    self.store.set_channel_state(REFLECTED.0, REFLECTED.1, &reflected.read_to.to_string()).await?;
                    state.last_reflection_failed = false;
                    state.carried_new = 0;
                    state.carried_actionable = 0;
                    state.next_followup_at = reflected.next_followup;
                    report.created = reflected.created;
                    if !state.paused {
                        self.auto_create(&report.created).await?;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "reflection failed");
                    state.last_reflection_failed = true;
                }
            }
        }
        state.last_pulse_at = Some(now);
        let mut outcome_json = serde_json::to_value(&outcome).expect("outcome serializes");
        if let Some(run_id) = &report.run_id {
            outcome_json["run_id"] = run_id.clone().into();
        }
        state.last_outcome = Some(outcome_json);
        self.store.save_heartbeat(&state).await?;
        metrics::counter!("loopgate_pulses_total", "outcome" => outcome_name(&outcome)).increment(1);
        Ok(report)
    }

    /// New suggestions that pass the auto-create gate (SPEC §7) are acted on at once, by
    /// loopgate, on the owner's behalf; the task that creates is still policy's to allow.
    async fn auto_create(&self, created: &[SuggestionId]) -> Result<(), StoreError> {
        use loopgate_policies::auto_create::{Candidate, gate};
        if !self.settings.auto_create.enabled {
            return Ok(());
        }
        let acted = self.store.suggestions(&[SuggestionState::Acted], 500).await?;
        for id in created {
            let Some(s) = self.store.suggestion(*id).await? else { continue };
            if !s.state.is_answerable() {
                continue;
            }
            let Ok(view) = loopgate_policies::ActionView::of(&s.action) else { continue };
            let assessment = self.settings.policy.assess(&view);
            let similar_acted = acted
                .iter()
                .filter(|a| a.class == s.class)
                .filter(|a| loopgate_policies::ActionView::of(&a.action).is_ok_and(|v| v == view))
                .count();
            let candidate = Candidate {
                action: &view,
                effect: assessment.effect,
                risk: assessment.risk,
                target_trusted: view.target == "self",
                similar_acted: u32::try_from(similar_acted).unwrap_or(u32::MAX),
            };
            match gate(self.settings.auto_create, &candidate) {
                Ok(()) => {
                    let responder = Responder { by: "auto-create".into(), via: "loopgate".into() };
                    match self.respond(*id, &Response::Act, &responder).await {
                        Ok(_) => tracing::info!(suggestion = id, "auto-created: acted on without asking"),
                        Err(RespondError::Store(e)) => return Err(e),
                        Err(error) => tracing::warn!(suggestion = id, %error, "auto-create could not act"),
                    }
                }
                Err(why) => tracing::debug!(suggestion = id, why, "not auto-created"),
            }
        }
        Ok(())
    }

    /// Reads signals above the cursor, moving it; returns how many and how many are
    /// actionable.
    async fn read_new(&self, state: &mut HeartbeatRecord) -> Result<(usize, usize), StoreError> {
        let (mut read, mut actionable) = (0, 0);
        while read < MAX_READ_PER_PULSE {
            let page = self
                .store
                .list_signals(&SignalQuery {
                    after_seq: Some(state.cursor),
                    limit: READ_PAGE,
                    ..SignalQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            state.cursor = last.seq;
            read += page.len();
            actionable += page.iter().filter(|s| detect::actionable(s)).count();
            if page.len() < READ_PAGE as usize {
                break;
            }
        }
        Ok((read, actionable))
    }

    /// Runs one reflection and indexes it. The outer error is the store failing to even
    /// record the run; the inner one is the reflection failing, which is recorded.
    async fn reflect(
        &self,
        trigger: &str,
        reason: &str,
        upkeep: &Upkeep,
    ) -> Result<(String, Result<Reflected, anyhow::Error>), StoreError> {
        let started = self.now();
        let run_id = self.store.start_run(started, trigger, reason).await?;
        let span = tracing::info_span!("reflection", run_id = %run_id);
        let result = tracing::Instrument::instrument(self.reflect_run(&run_id, upkeep), span).await;
        let mut record = RunRecord {
            run_id: run_id.clone(),
            started_at: started,
            finished_at: Some(self.now()),
            trigger: trigger.into(),
            reason: reason.into(),
            status: "succeeded".into(),
            error: None,
            signals: 0,
            ideas: 0,
            kept: 0,
            created: 0,
        };
        let body = match &result {
            Ok(reflected) => {
                record.signals = reflected.signals as i64;
                record.ideas = reflected.ideas as i64;
                record.kept = reflected.kept as i64;
                record.created = reflected.created.len() as i64;
                reflected.body.clone()
            }
            Err(error) => {
                record.status = "failed".into();
                record.error = Some(format!("{error:#}"));
                serde_json::json!({})
            }
        };
        self.store.finish_run(&record, &body).await?;
        Ok((run_id, result))
    }

    /// A reflection's signals, oldest first, and the newest `seq` among what it looked at:
    /// every actionable signal since the last reflection (the newest
    /// [`MAX_ACTIONABLE_EVIDENCE`]), then the recent window shared fairly between sources
    /// and conversations up to `max_evidence`.
    async fn evidence_signals(&self, now: DateTime<Utc>) -> Result<(Vec<Signal>, i64), StoreError> {
        let settings = &self.settings;
        let max = settings.max_evidence as usize;
        let since_time = now - settings.lookback;
        let recent = self
            .store
            .list_signals(&SignalQuery {
                since: Some(since_time),
                limit: settings.max_evidence.saturating_mul(WINDOW_FACTOR),
                ..SignalQuery::default()
            })
            .await?;
        let newest = recent.iter().map(|s| s.seq).max().unwrap_or(0);
        let reflected: i64 =
            self.store.channel_state(REFLECTED.0, REFLECTED.1).await?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut actionable: std::collections::VecDeque<Signal> = std::collections::VecDeque::new();
        let mut cursor = reflected.max(newest - MAX_EVIDENCE_SCAN);
        loop {
            let page = self
                .store
                .list_signals(&SignalQuery { after_seq: Some(cursor), limit: READ_PAGE, ..SignalQuery::default() })
                .await?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            let full = page.len() == READ_PAGE as usize;
            for signal in page {
                let in_window = signal.last_seen >= since_time;
                if signal.seq <= newest && in_window && detect::actionable(&signal) {
                    actionable.push_back(signal);
                    if actionable.len() > MAX_ACTIONABLE_EVIDENCE.min(max) {
                        actionable.pop_front();
                    }
                }
            }
            if !full || cursor >= newest {
                break;
            }
        }
        let taken: HashSet<SignalId> = actionable.iter().map(|s| s.id).collect();
        let rest: Vec<Signal> = recent.into_iter().filter(|s| !taken.contains(&s.id)).collect();
        let room = max.saturating_sub(actionable.len());
        let mut signals: Vec<Signal> = actionable.into_iter().chain(fair_share(rest, room)).collect();
        signals.sort_by_key(|s| s.seq);
        Ok((signals, newest))
    }

    async fn reflect_run(&self, run_id: &str, upkeep: &Upkeep) -> anyhow::Result<Reflected> {
        use anyhow::Context as _;
        let now = self.now();
        let settings = &self.settings;
        let ctx = Context {
            now,
            timezone: settings.rules.timezone,
            answer_grace: settings.answer_grace,
            approval_ageing: settings.approval_ageing,
        };

        let (signals, read_to) = self.evidence_signals(now).await.context("reading recent signals")?;
        let mut memories = Vec::new();
        for (kind, limit) in
            [(MemoryKind::IgnoredNoise, 200), (MemoryKind::WatchItem, 50), (MemoryKind::RecurringTask, 50)]
        {
            let hits = self
                .store
                .search_memories(&MemoryQuery { text: String::new(), kind: Some(kind), limit })
                .await
                .context("reading memories")?;
            memories.extend(hits.into_iter().map(|h| h.memory));
        }
        let mut history = self
            .store
            .list_signals(&SignalQuery {
                since: Some(now - Duration::weeks(HABIT_WEEKS)),
                owner_only: true,
                limit: MAX_HISTORY,
                ..SignalQuery::default()
            })
            .await
            .context("reading the owner's past weeks")?;
        history.reverse();
        let approvals = self
            .store
            .approvals(&[crate::actions::ApprovalState::Pending], 100)
            .await
            .context("reading pending approvals")?;
        let mut evidence = Evidence { signals, memories, history, approvals, ..Evidence::default() };

        let mut ideas = run::ideas(&evidence, &ctx);
        // The owner's model, when there is one, proposes beside the deterministic
        // reflector; its ideas go through the same critique and policy.
        let (model_ideas, model_record) = self.model_ideas(&evidence).await;
        ideas.extend(model_ideas);
        self.known_suggestions(&mut ideas, &mut evidence).await.context("reading known suggestions")?;
        evidence.forgotten_keys = self.remember_habits(&ideas, &evidence, &ctx).await.context("remembering habits")?;
        evidence.noise_places = self.noise_places(&ideas, &evidence).await.context("reading where noise came from")?;
        let weights = Weights::at(&self.store.weights().await.context("reading weights")?, now);
        let held = self.store.held_ideas().await.context("reading what learning held back")?;
        let open = self.store.count_suggestions(SuggestionState::Active).await?
            + self.store.count_suggestions(SuggestionState::Scheduled).await?;
        let room = settings.max_active.saturating_sub(open as usize);
        let timezone = settings.rules.timezone;
        // Scoped so the ranking closure is gone before the next await.
        let thought = {
            let rank = |idea: &Idea| {
                let features = features_of(idea, &evidence, shown_at(idea, now).with_timezone(&timezone).hour());
                Ranked { rank: weights.rank(&features, idea.confidence), features }
            };
            let judging = Judging { rank: Box::new(rank), room, now, policy: &settings.policy, held };
            run::judge(ideas, &evidence, &judging)
        };
        self.store.record_held(&thought.held).await.context("remembering what learning held back")?;

        let (new, rankings): (Vec<NewSuggestion>, Vec<Ranking>) = thought
            .decision
            .iter()
            .filter_map(|idea| {
                let critique = thought.critique_of(&idea.key)?;
                Some(self.suggestion_from(idea, &evidence, critique, thought.ranks.get(&idea.key), now))
            })
            .unzip();
        let created =
            self.store.create_ranked_suggestions(run_id, &new, &rankings).await.context("creating suggestions")?;
        let shown = self.store.suggestions_by_id(&created).await?;
        let dispatch = Dispatch::new(&shown, upkeep);
        let next_followup = detect::next_question_ripens(&evidence.signals, &ctx);

        let reflected = Reflected {
            signals: evidence.signals.len(),
            ideas: thought.ideas.len(),
            kept: thought.decision.len(),
            body: serde_json::json!({
                "evidence": run::evidence_summary(&evidence),
                "ideas": thought.ideas,
                "critique": thought.critique,
                "decision": thought.decision,
                "dispatch": dispatch,
                "model_reflector": model_record,
            }),
            created,
            next_followup,
            read_to,
        };
        let dir = settings.data_dir.clone();
        let run_id = run_id.to_owned();
        tokio::task::spawn_blocking(move || run::write_artifacts(&dir, &run_id, now, &evidence, &thought, &dispatch))
            .await
            .context("writing artifacts")?
            .context("writing artifacts")?;
        Ok(reflected)
    }

    /// Keeps each weekly habit about to be raised as a `recurring_task` memory (once per
    /// turn: only for ideas not raised before), and returns the keys of those the owner
    /// asked to forget, which are not raised at all.
    async fn remember_habits(
        &self,
        ideas: &[Idea],
        evidence: &Evidence,
        ctx: &Context,
    ) -> Result<HashSet<String>, StoreError> {
        let mut forgotten = HashSet::new();
        let new_turns: Vec<&Idea> =
            ideas.iter().filter(|i| i.kind == IdeaKind::RecurringTask && !evidence.raised(&i.key)).collect();
        if new_turns.is_empty() {
            return Ok(forgotten);
        }
        for habit in habits::habits(&evidence.history, ctx) {
            let subject = habit.subject();
            let Some(idea) = new_turns.iter().find(|i| i.topic.as_deref() == Some(subject.as_str())) else { continue };
            let candidate = MemoryCandidate {
                kind: MemoryKind::RecurringTask,
                content: habit.statement(),
                subject,
                confidence: idea.confidence,
                origin: Origin::Reflection,
                trust: habit.trust,
                evidence: habit.evidence.clone(),
            };
            if let RememberOutcome::Rejected { reason: Rejection::Forgotten } = self.store.remember(candidate).await? {
                forgotten.insert(idea.key.clone());
            }
        }
        Ok(forgotten)
    }

    /// Which ideas were raised before: live ones are duplicates, decided ones are not
    /// raised again. A decided idea whose signal came again since (the ledger merges a
    /// repeat into the same signal) is a new ask, under a new key.
    async fn known_suggestions(&self, ideas: &mut [Idea], evidence: &mut Evidence) -> Result<(), StoreError> {
        let keys: Vec<String> = ideas.iter().map(|i| i.key.clone()).collect();
        let mut known = self.store.idea_key_states(&keys).await?;
        let mut again = Vec::new();
        for idea in ideas.iter_mut() {
            let Some((state, at)) = known.get(&idea.key) else { continue };
            if state.is_open() {
                continue;
            }
            let repeats: Vec<&Signal> = idea.evidence.iter().filter_map(|id| evidence.signal(*id)).collect();
            if repeats.iter().any(|s| s.count > 1 && s.last_seen > *at) {
                let count: i64 = repeats.iter().map(|s| s.count).sum();
                idea.key = format!("{}@{count}", idea.key);
                again.push(idea.key.clone());
            }
        }
        known.extend(self.store.idea_key_states(&again).await?);
        for idea in ideas.iter() {
            match known.get(&idea.key) {
                Some((state, _)) if state.is_open() => {
                    evidence.live_keys.insert(idea.key.clone());
                }
                Some((state, _)) => {
                    evidence.decided.insert(idea.key.clone(), *state);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Where each ignored-noise memory that resembles one of the ideas came from: the
    /// person and place of its evidence, as [`learning::Features::places`] names them. A
    /// memory whose signals are gone is from nowhere known, and holds nothing back.
    async fn noise_places(
        &self,
        ideas: &[Idea],
        evidence: &Evidence,
    ) -> Result<std::collections::HashMap<i64, Vec<String>>, StoreError> {
        let titles: Vec<HashSet<String>> = ideas.iter().map(|i| detect::content_words(&i.title)).collect();
        let mut places = std::collections::HashMap::new();
        for memory in evidence.memories.iter().filter(|m| m.kind == MemoryKind::IgnoredNoise && !m.evidence.is_empty())
        {
            let words = detect::content_words(&memory.content);
            if !titles.iter().any(|t| detect::mostly_within(&words, t)) {
                continue;
            }
            let mut found = Vec::new();
            for id in &memory.evidence {
                let signal = match evidence.signal(*id) {
                    Some(s) => Some(s.clone()),
                    None => self.store.get_signal(*id).await?,
                };
                let Some(signal) = signal else { continue };
                let probe = Idea { evidence: vec![signal.id], ..ideas[0].clone() };
                let lone = Evidence { signals: vec![signal], ..Evidence::default() };
                found.extend(features_of(&probe, &lone, 0).places());
            }
            if found.is_empty() {
                found.push("unknown".to_owned());
            }
            places.insert(memory.id, found);
        }
        Ok(places)
    }

    fn suggestion_from(
        &self,
        idea: &Idea,
        evidence: &Evidence,
        critique: &Critique,
        ranked: Option<&Ranked>,
        now: DateTime<Utc>,
    ) -> (NewSuggestion, Ranking) {
        let lines = idea
            .evidence
            .iter()
            .map(|id| EvidenceLine { signal_id: *id, summary: evidence.signal(*id).map(summary).unwrap_or_default() })
            .collect();
        let shown_at = shown_at(idea, now);
        let scheduled = shown_at > now;
        let ranking = Ranking {
            ranked: critique.ranked.clone(),
            detail: ranked.map(|r| RankingDetail {
                features: r.features.clone(),
                explored: critique.explored,
                by: match &critique.held_by {
                    Some(held) if critique.explored => Some(held.clone()),
                    _ => r
                        .rank
                        .by
                        .as_ref()
                        .map(|t| HeldKey { dimension: t.dimension.as_str().into(), key: t.key.clone() }),
                },
                estimate: r.rank.estimate,
                overall: r.rank.overall,
                expected: Some(r.rank.expected),
            }),
        };
        let suggestion = NewSuggestion {
            key: idea.key.clone(),
            topic: idea.topic.clone(),
            title: idea.title.clone(),
            why_now: idea.why_now.clone(),
            evidence: lines,
            confidence: idea.confidence,
            score: critique.score,
            action: idea.action.clone(),
            risk: critique.risk,
            policy: critique.policy,
            class: class_of(idea.kind).into(),
            source: source_of(idea, evidence).into(),
            reflector: idea.reflector.as_str().into(),
            state: if scheduled { SuggestionState::Scheduled } else { SuggestionState::Active },
            due_at: idea.due.map(crate::clock::to_millis),
            // A reminder about an approval is moot once the approval expires.
            expires_at: crate::clock::to_millis(match (idea.kind, idea.due) {
                (IdeaKind::AgeingApproval, Some(due)) => due.min(shown_at + self.settings.expires_after),
                _ => shown_at + self.settings.expires_after,
            }),
        };
        (suggestion, ranking)
    }

    pub async fn respond(
        &self,
        id: SuggestionId,
        response: &Response,
        responder: &Responder,
    ) -> Result<Responded, RespondError> {
        let task = self.task_for_answer(id, response, responder).await?;
        let mut responded =
            self.store.respond(id, response, responder, self.settings.rules.timezone, task.as_ref()).await?;
        metrics::counter!("loopgate_responses_total", "response" => response.name()).increment(1);
        tracing::info!(suggestion = id, response = response.name(), by = %responder.by, via = %responder.via, "answered");
        if let Some(task) = &responded.task
            && task.state == crate::actions::TaskState::Queued
        {
            responded.task = Some(self.run_task(task.id).await?);
        }
        Ok(responded)
    }

    /// An answer from a chat channel. Authorization happens here, the same for every
    /// channel: anyone but the owner and the accounts allowed on that channel is refused
    /// before anything is read or written.
    pub async fn respond_from(
        &self,
        id: SuggestionId,
        response: &Response,
        claimant: &Claimant,
    ) -> Result<Responded, RespondError> {
        let responder = self.authorize(claimant, &format!("suggestion:{id}")).ok_or_else(|| {
            RespondError::Unauthorized { channel: claimant.channel.clone(), user_id: claimant.user_id.clone() }
        })?;
        self.respond(id, response, &responder).await
    }

    pub async fn status(&self) -> Result<HeartbeatStatus, StoreError> {
        let state = self.store.heartbeat_state().await?;
        let now = self.now();
        let today = now.with_timezone(&self.settings.rules.timezone).date_naive();
        let used = if state.budget_day == Some(today) { state.reflections_today } else { 0 };
        let next_pulse_at = *self.next_pulse_at.lock().expect("next pulse lock");
        let next_due_at = self.store.next_due_at().await?;
        Ok(HeartbeatStatus {
            last_pulse_at: state.last_pulse_at,
            last_outcome: state.last_outcome,
            last_run_id: state.last_run_id,
            last_reflection_at: state.last_reflection_at,
            last_reflection_failed: state.last_reflection_failed,
            next_pulse_at,
            next_due_at,
            next_followup_at: state.next_followup_at,
            reflections_today: used,
            budget_left: (i64::from(self.settings.rules.daily_budget) - used).max(0),
            paused: state.paused,
            carried_signals: state.carried_new,
            carried_actionable: state.carried_actionable,
            signal_cursor: state.cursor,
        })
    }

    /// The kill switch for thinking: while paused, pulses only read and count.
    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        let _one_at_a_time = self.pulse_lock.lock().await;
        self.store.set_paused(paused).await
    }

    /// Reloads the owners bound by pairing into the identities every channel and the API
    /// ask (a `loopgate owner remove` from the shell reaches a running service this way).
    pub async fn refresh_owners(&self) -> Result<(), StoreError> {
        let owners = self.store.paired_owners().await?;
        self.settings.answerers.set_paired(owners.into_iter().map(|o| (o.channel, o.account)));
        Ok(())
    }

    /// Someone sent a pairing code to the bot on `channel`; a right one makes them an
    /// owner there at once.
    pub async fn pair(
        &self,
        channel: crate::pairing::PairChannel,
        claimant: &Claimant,
        code: &str,
    ) -> Result<crate::pairing::Redeemed, StoreError> {
        let redeemed =
            self.store.redeem_pairing_code(channel, &claimant.user_id, claimant.name.as_deref(), code).await?;
        match redeemed {
            crate::pairing::Redeemed::Paired => {
                tracing::warn!(channel = channel.as_str(), account = %claimant.user_id, "a new owner paired");
                self.refresh_owners().await?;
            }
            crate::pairing::Redeemed::Refused(why) => {
                tracing::warn!(channel = channel.as_str(), account = %claimant.user_id, reason = why.as_str(), "a pairing code was refused");
            }
            crate::pairing::Redeemed::AlreadyOwner => {}
        }
        Ok(redeemed)
    }
}

struct Reflected {
    signals: usize,
    ideas: usize,
    kept: usize,
    body: serde_json::Value,
    created: Vec<SuggestionId>,
    next_followup: Option<DateTime<Utc>>,
    /// The newest `seq` this reflection looked at.
    read_to: i64,
}

/// Up to `room` signals from `recent` (newest first), shared between sources and
/// conversations: one from each in turn, newest first, so a flood from one place cannot
/// crowd out the rest.
fn fair_share(recent: Vec<Signal>, room: usize) -> Vec<Signal> {
    let mut groups: Vec<(String, std::collections::VecDeque<Signal>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for signal in recent {
        let place = signal.conversation.as_ref().map(|c| c.id.as_str()).unwrap_or_default();
        let key = format!("{}\u{0}{place}", signal.source.as_str());
        let at = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, std::collections::VecDeque::new()));
            groups.len() - 1
        });
        groups[at].1.push_back(signal);
    }
    let mut taken = Vec::with_capacity(room);
    while taken.len() < room && groups.iter().any(|(_, g)| !g.is_empty()) {
        for (_, group) in groups.iter_mut() {
            if taken.len() == room {
                break;
            }
            if let Some(signal) = group.pop_front() {
                taken.push(signal);
            }
        }
    }
    taken
}

/// What a run put in front of the owner: `dispatch.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Dispatch {
    /// Suggestions created, with the state they start in (active now, or scheduled).
    pub created: Vec<DispatchedSuggestion>,
    /// Snoozed or scheduled suggestions brought back by the same pulse.
    pub came_due: Vec<SuggestionId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DispatchedSuggestion {
    pub id: SuggestionId,
    pub key: String,
    pub title: String,
    pub state: SuggestionState,
    pub score: f64,
    pub due_at: Option<DateTime<Utc>>,
    /// Why it ranks where it does.
    pub ranked: String,
}

impl Dispatch {
    fn new(shown: &[Suggestion], upkeep: &Upkeep) -> Dispatch {
        Dispatch {
            created: shown
                .iter()
                .map(|s| DispatchedSuggestion {
                    id: s.id,
                    key: s.key.clone(),
                    title: s.title.clone(),
                    state: s.state,
                    score: s.score,
                    due_at: s.due_at,
                    ranked: s.ranking.ranked.clone(),
                })
                .collect(),
            came_due: upkeep.came_due.clone(),
        }
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Idle { .. } => "idle",
        Outcome::Deferred { .. } => "deferred",
        Outcome::Reflect { .. } => "reflect",
        Outcome::Dispatch { .. } => "dispatch",
    }
}

pub fn class_of(kind: IdeaKind) -> &'static str {
    match kind {
        IdeaKind::Reminder => "reminder",
        IdeaKind::Promise => "promise",
        IdeaKind::UnansweredQuestion => "unanswered_question",
        IdeaKind::UnrepliedMail => "unreplied_mail",
        IdeaKind::WatchItem => "watch_item",
        IdeaKind::RecurringTask => "recurring_task",
        IdeaKind::AgeingApproval => "ageing_approval",
    }
}

/// When a suggestion made of the idea is first shown: a reminder or habit at its time,
/// everything else now.
fn shown_at(idea: &Idea, now: DateTime<Utc>) -> DateTime<Utc> {
    match idea.due {
        Some(due) if matches!(idea.kind, IdeaKind::Reminder | IdeaKind::RecurringTask) && due > now => due,
        _ => now,
    }
}

/// What learning ranks an idea by: its class and source, the hour it is shown at, the
/// person and place of its first signal (not the owner, and the place only when it is not
/// that person's direct chat, which the person already says), and what its title is about.
fn features_of(idea: &Idea, evidence: &Evidence, hour: u32) -> learning::Features {
    let signal = idea.evidence.iter().find_map(|id| evidence.signal(*id));
    let source = source_of(idea, evidence);
    let actor = signal.and_then(|s| s.actor.as_ref()).filter(|a| !a.is_owner);
    let conversation = signal.and_then(|s| s.conversation.as_ref()).filter(|c| actor.is_none_or(|a| a.id != c.id));
    learning::Features {
        class: class_of(idea.kind).into(),
        source: source.into(),
        hour,
        actor: actor.map(|a| format!("{source}:{}", a.id)),
        conversation: conversation.map(|c| format!("{source}:{}", c.id)),
        words: learning::topic_words(&idea.title),
    }
}

/// The channel the idea's first signal came from ("api" when there is none).
fn source_of<'a>(idea: &Idea, evidence: &'a Evidence) -> &'a str {
    idea.evidence.first().and_then(|id| evidence.signal(*id)).map_or("api", |s| s.source.as_str())
}

/// "Dana on telegram: “Can you review the budget draft?”"
fn summary(signal: &Signal) -> String {
    let who = signal.actor.as_ref().map_or("you", |a| a.name.as_deref().unwrap_or(&a.id));
    format!("{who} on {}: “{}”", signal.source, detect::excerpt(&signal.text))
}
