//! `Store` methods for workflow intelligence: suggestions and responses, delivery events
//! for channels, the heartbeat's persisted state, the reflection-run index and learned
//! weights. Every change of a suggestion's state and its consequences (event, weights,
//! memory) commit together.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use loopgate_policies::{Effect, Risk};
use serde::Serialize;
use sqlx::{Acquire, Connection};

use super::intel_sql::{self, HeartbeatRow, RunRow, SuggestionRow, SurfaceRow};
use super::{Pools, Store, StoreError};
use crate::actions::NewTask;
use crate::clock::{from_millis, to_millis};
use crate::learning::{self, Features, Held, HeldIdea, Ranking, StoredWeight};
use crate::memory::RememberOutcome;
use crate::suggestion::{
    Delivery, DeliveryKind, EvidenceLine, RespondError, Responded, Responder, Response, Suggestion, SuggestionId,
    SuggestionState,
};

/// A suggestion about to be created by a reflection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewSuggestion {
    pub key: String,
    pub topic: Option<String>,
    pub title: String,
    pub why_now: String,
    pub evidence: Vec<EvidenceLine>,
    pub confidence: f64,
    pub score: f64,
    pub action: serde_json::Value,
    pub class: String,
    pub source: String,
    /// `deterministic`, or `model` when the owner's model proposed it.
    pub reflector: String,
    /// `Active`, or `Scheduled` until `due_at`.
    pub state: SuggestionState,
    pub due_at: Option<i64>,
    pub expires_at: i64,
    /// The action's risk class and what policy said of it when it was raised.
    pub risk: Risk,
    pub policy: Effect,
}

/// One reflection run as indexed in the database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// "heartbeat" or "manual".
    pub trigger: String,
    pub reason: String,
    /// "running", "succeeded" or "failed".
    pub status: String,
    pub error: Option<String>,
    pub signals: i64,
    pub ideas: i64,
    pub kept: i64,
    pub created: i64,
}

impl From<RunRow> for RunRecord {
    fn from(r: RunRow) -> RunRecord {
        RunRecord {
            run_id: r.run_id,
            started_at: from_millis(r.started_at),
            finished_at: r.finished_at.map(from_millis),
            trigger: r.trigger,
            reason: r.reason,
            status: r.status,
            error: r.error,
            signals: r.signals,
            ideas: r.ideas,
            kept: r.kept,
            created: r.created,
        }
    }
}

/// A run with what it looked at and concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub record: RunRecord,
    /// `{evidence, ideas, critique, decision, dispatch}`, as in the run's files.
    #[serde(flatten)]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// The heartbeat's memory between pulses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HeartbeatRecord {
    pub cursor: i64,
    pub carried_new: i64,
    pub carried_actionable: i64,
    pub last_pulse_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<serde_json::Value>,
    pub last_run_id: Option<String>,
    pub last_reflection_at: Option<DateTime<Utc>>,
    pub last_reflection_failed: bool,
    pub budget_day: Option<NaiveDate>,
    pub reflections_today: i64,
    pub next_followup_at: Option<DateTime<Utc>>,
    pub paused: bool,
}

impl From<HeartbeatRow> for HeartbeatRecord {
    fn from(h: HeartbeatRow) -> HeartbeatRecord {
        HeartbeatRecord {
            cursor: h.cursor,
            carried_new: h.carried_new,
            carried_actionable: h.carried_actionable,
            last_pulse_at: h.last_pulse_at.map(from_millis),
            last_outcome: h.last_outcome.and_then(|o| serde_json::from_str(&o).ok()),
            last_run_id: h.last_run_id,
            last_reflection_at: h.last_reflection_at.map(from_millis),
            last_reflection_failed: h.last_reflection_failed != 0,
            budget_day: h.budget_day.and_then(|d| d.parse().ok()),
            reflections_today: h.reflections_today,
            next_followup_at: h.next_followup_at.map(from_millis),
            paused: h.paused != 0,
        }
    }
}

impl HeartbeatRecord {
    fn to_row(&self) -> HeartbeatRow {
        HeartbeatRow {
            cursor: self.cursor,
            carried_new: self.carried_new,
            carried_actionable: self.carried_actionable,
            last_pulse_at: self.last_pulse_at.map(to_millis),
            last_outcome: self.last_outcome.as_ref().map(|o| o.to_string()),
            last_run_id: self.last_run_id.clone(),
            last_reflection_at: self.last_reflection_at.map(to_millis),
            last_reflection_failed: i64::from(self.last_reflection_failed),
            budget_day: self.budget_day.map(|d| d.to_string()),
            reflections_today: self.reflections_today,
            next_followup_at: self.next_followup_at.map(to_millis),
            paused: i64::from(self.paused),
        }
    }
}

/// What upkeep changed: suggestions that came due (back to active), expired, or went stale.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Upkeep {
    pub came_due: Vec<SuggestionId>,
    pub expired: Vec<SuggestionId>,
    pub ignored: Vec<SuggestionId>,
    /// Approvals nobody decided in time; their tasks were cancelled.
    pub approvals_expired: Vec<crate::actions::ApprovalId>,
    /// Queued tasks run (left by a restart, or held while stopped).
    pub tasks_run: Vec<crate::actions::TaskId>,
}

impl Upkeep {
    pub fn is_empty(&self) -> bool {
        self.came_due.is_empty()
            && self.expired.is_empty()
            && self.ignored.is_empty()
            && self.approvals_expired.is_empty()
            && self.tasks_run.is_empty()
    }
}

/// Runs `$body` in a write transaction on whichever backend the store has, with `$sql`
/// naming that backend's intelligence SQL. `?` in the body rolls back.
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident, $sql:ident| $body:block) => {
        in_write_tx!($store, intel_sql, |$tx, $sql| $body)
    };
    ($store:expr, $module:ident, |$tx:ident, $sql:ident| $body:block) => {
        match &$store.inner.pools {
            Pools::Sqlite { write, .. } => {
                #[allow(unused_imports)]
                use $module::sqlite as $sql;
                let mut conn = write.acquire().await?;
                let mut $tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
            Pools::Postgres(pool) => {
                #[allow(unused_imports)]
                use $module::postgres as $sql;
                let mut conn = pool.acquire().await?;
                let mut $tx = conn.begin().await?;
                let value = $body;
                $tx.commit().await?;
                value
            }
        }
    };
}

/// Runs `$body` on a read connection.
macro_rules! on_read {
    ($store:expr, |$conn:ident, $sql:ident| $body:block) => {
        on_read!($store, intel_sql, |$conn, $sql| $body)
    };
    ($store:expr, $module:ident, |$conn:ident, $sql:ident| $body:block) => {
        match &$store.inner.pools {
            Pools::Sqlite { read, .. } => {
                #[allow(unused_imports)]
                use $module::sqlite as $sql;
                let mut $conn = read.acquire().await?;
                $body
            }
            Pools::Postgres(pool) => {
                #[allow(unused_imports)]
                use $module::postgres as $sql;
                let mut $conn = pool.acquire().await?;
                $body
            }
        }
    };
}

fn attach_surfaces(rows: Vec<SuggestionRow>, surfaces: Vec<SurfaceRow>) -> Result<Vec<Suggestion>, StoreError> {
    let mut by_id: HashMap<i64, Vec<_>> = HashMap::new();
    for s in surfaces {
        by_id.entry(s.suggestion_id).or_default().push(s.into_surface());
    }
    rows.into_iter()
        .map(|row| {
            let surfaces = by_id.remove(&row.id).unwrap_or_default();
            Ok(row.into_suggestion(surfaces)?)
        })
        .collect()
}

/// Reads one suggestion with its surfaces on a connection of either backend.
macro_rules! load_one {
    ($sql:ident, $conn:expr, $id:expr) => {{
        match $sql::suggestion($conn, $id).await? {
            None => None,
            Some(row) => {
                let surfaces = $sql::surfaces($conn, &[row.id]).await?;
                attach_surfaces(vec![row], surfaces)?.pop()
            }
        }
    }};
}

/// Adds what an answer teaches to each key's evidence, from its faded values.
macro_rules! apply_lessons {
    ($sql:ident, $conn:expr, $lessons:expr, $now:expr) => {{
        for lesson in $lessons {
            let current = $sql::weight($conn, lesson.dimension, &lesson.key).await?.and_then(|w| w.into_weight());
            $sql::put_weight($conn, &learning::learned(current.as_ref(), &lesson, $now)).await?;
        }
    }};
}

/// What an answer to a suggestion raised before rankings were kept teaches: its class,
/// its source and the hour it was answered at.
fn fallback_features(suggestion: &Suggestion, hour: u32) -> Features {
    Features { class: suggestion.class.clone(), source: suggestion.source.clone(), hour, ..Features::default() }
}

/// Evidence untouched this long has faded to nothing (ten half-lives: a thousandth).
fn faded_before(now: DateTime<Utc>) -> i64 {
    to_millis(now - learning::HALF_LIFE * 10)
}

/// Held-back ideas are remembered this long; their signals are long out of view by then.
const HELD_FOR: Duration = Duration::days(30);

fn edited_action_of(response: &Response) -> Option<&serde_json::Value> {
    match response {
        Response::Edit { action } => Some(action),
        _ => None,
    }
}

fn memory_id(outcome: &RememberOutcome) -> Option<i64> {
    match outcome {
        RememberOutcome::Created { memory }
        | RememberOutcome::Reinforced { memory }
        | RememberOutcome::Superseded { memory } => Some(memory.id),
        RememberOutcome::Rejected { .. } => None,
    }
}

impl Store {
    pub async fn heartbeat_state(&self) -> Result<HeartbeatRecord, StoreError> {
        Ok(on_read!(self, |conn, sql| { sql::heartbeat(&mut conn).await? }).into())
    }

    /// Saves everything but the kill switch, which only [`Store::set_paused`] changes.
    pub async fn save_heartbeat(&self, state: &HeartbeatRecord) -> Result<(), StoreError> {
        in_write_tx!(self, |tx, sql| { sql::save_heartbeat(&mut tx, &state.to_row()).await? });
        Ok(())
    }

    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        in_write_tx!(self, |tx, sql| { sql::set_paused(&mut tx, paused).await? });
        Ok(())
    }

    /// Indexes a new run and names it: `20261118T101500Z-0007`.
    pub async fn start_run(&self, at: DateTime<Utc>, trigger: &str, reason: &str) -> Result<String, StoreError> {
        Ok(in_write_tx!(self, |tx, sql| {
            let id = sql::start_run(&mut tx, to_millis(at), trigger, reason).await?;
            let run_id = format!("{}-{id:04}", at.format("%Y%m%dT%H%M%SZ"));
            sql::name_run(&mut tx, id, &run_id).await?;
            run_id
        }))
    }

    pub async fn finish_run(&self, record: &RunRecord, body: &serde_json::Value) -> Result<(), StoreError> {
        let body = body.to_string();
        in_write_tx!(self, |tx, sql| { sql::finish_run(&mut tx, record, &body).await? });
        Ok(())
    }

    pub async fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows = on_read!(self, |conn, sql| { sql::runs(&mut conn, i64::from(limit.max(1))).await? });
        Ok(rows.into_iter().map(RunRecord::from).collect())
    }

    pub async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        let row = on_read!(self, |conn, sql| { sql::run(&mut conn, run_id).await? });
        Ok(row.map(|mut row| {
            let body = match row.body.take().and_then(|b| serde_json::from_str(&b).ok()) {
                Some(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            RunDetail { record: row.into(), body }
        }))
    }

    /// Which of these idea keys already became suggestions (whatever their state).
    pub async fn existing_idea_keys(&self, keys: &[String]) -> Result<HashSet<String>, StoreError> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        Ok(on_read!(self, |conn, sql| { sql::existing_keys(&mut conn, keys).await? }))
    }

    /// Which of these idea keys became suggestions: the state each is in now and when it
    /// last changed.
    pub async fn idea_key_states(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, (SuggestionState, DateTime<Utc>)>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = on_read!(self, |conn, sql| { sql::key_states(&mut conn, keys).await? });
        rows.into_iter()
            .map(|(key, state, at)| {
                let state = SuggestionState::parse(&state)
                    .ok_or_else(|| sqlx::Error::Protocol(format!("suggestion {key} has a bad state")))?;
                Ok((key, (state, from_millis(at))))
            })
            .collect()
    }

    pub async fn count_suggestions(&self, state: SuggestionState) -> Result<i64, StoreError> {
        Ok(on_read!(self, |conn, sql| { sql::count_in(&mut conn, state).await? }))
    }

    /// Creates suggestions from one run; each supersedes open ones on its topic. Returns the
    /// ids of those created (a key that already exists is skipped).
    pub async fn create_suggestions(
        &self,
        run_id: &str,
        suggestions: &[NewSuggestion],
    ) -> Result<Vec<SuggestionId>, StoreError> {
        self.create_ranked_suggestions(run_id, suggestions, &[]).await
    }

    /// [`Store::create_suggestions`] with why each ranks where it does and what an answer to
    /// it teaches, `rankings[i]` for `suggestions[i]` (none for the rest).
    pub async fn create_ranked_suggestions(
        &self,
        run_id: &str,
        suggestions: &[NewSuggestion],
        rankings: &[Ranking],
    ) -> Result<Vec<SuggestionId>, StoreError> {
        let now = to_millis(self.clock().now());
        let unranked = Ranking::default();
        Ok(in_write_tx!(self, |tx, sql| {
            let mut created = Vec::new();
            for (n, s) in suggestions.iter().enumerate() {
                let ranking = rankings.get(n).unwrap_or(&unranked);
                let Some(id) = sql::insert(&mut tx, s, ranking, run_id, now).await? else { continue };
                if let Some(topic) = &s.topic {
                    for old in sql::open_on_topic(&mut tx, topic).await? {
                        if old.id == id {
                            continue;
                        }
                        let change = sql::Change::default();
                        if sql::transition(&mut tx, old.id, old.revision, SuggestionState::Superseded, now, change)
                            .await?
                        {
                            sql::add_event(&mut tx, old.id, DeliveryKind::Update, old.revision + 1, now).await?;
                        }
                    }
                }
                if s.state == SuggestionState::Active {
                    sql::add_event(&mut tx, id, DeliveryKind::Show, 1, now).await?;
                }
                created.push(id);
            }
            created
        }))
    }

    pub async fn suggestion(&self, id: SuggestionId) -> Result<Option<Suggestion>, StoreError> {
        Ok(on_read!(self, |conn, sql| { load_one!(sql, &mut conn, id) }))
    }

    /// Suggestions in any of `states` (all when empty), best score first.
    pub async fn suggestions(&self, states: &[SuggestionState], limit: u32) -> Result<Vec<Suggestion>, StoreError> {
        on_read!(self, |conn, sql| {
            let rows = sql::suggestions(&mut conn, states, i64::from(limit.max(1))).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let surfaces = sql::surfaces(&mut conn, &ids).await?;
            attach_surfaces(rows, surfaces)
        })
    }

    /// Every learned key's evidence.
    pub async fn weights(&self) -> Result<Vec<StoredWeight>, StoreError> {
        let rows = on_read!(self, |conn, sql| { sql::weights(&mut conn).await? });
        Ok(rows.into_iter().filter_map(|r| r.into_weight()).collect())
    }

    /// What learning knows now, with its evidence (of one dimension, if given; at most
    /// `limit` keys each).
    pub async fn learning(
        &self,
        only: Option<learning::Dimension>,
        limit: usize,
    ) -> Result<learning::Overview, StoreError> {
        let (weights, held) = (self.weights().await?, self.held_ideas().await?);
        Ok(learning::overview(&weights, &held, self.clock().now(), only, limit))
    }

    /// The ideas learning held back before, for exploration's count.
    pub async fn held_ideas(&self) -> Result<Held, StoreError> {
        let rows = on_read!(self, |conn, sql| { sql::held(&mut conn).await? });
        Ok(Held::from_rows(rows.into_iter().map(|r| (r.idea_key, r.dimension, r.key, r.explored != 0))))
    }

    /// Remembers what a reflection held back (or showed anyway), and drops held-back ideas
    /// and learned evidence old enough to mean nothing.
    pub async fn record_held(&self, held: &[HeldIdea]) -> Result<(), StoreError> {
        let now = self.clock().now();
        in_write_tx!(self, |tx, sql| {
            sql::record_held(&mut tx, held, to_millis(now), to_millis(now - HELD_FOR)).await?;
            sql::prune_weights(&mut tx, faded_before(now)).await?;
        });
        Ok(())
    }

    /// Forgets what learning knows about one key (and what it held back), audited as the
    /// owner's decision. False when there was nothing to forget.
    pub async fn reset_learning(&self, dimension: &str, key: &str, by: &Responder) -> Result<bool, StoreError> {
        let now = to_millis(self.clock().now());
        Ok(in_write_tx!(self, |tx, sql| {
            let reset = sql::reset_weight(&mut tx, dimension, key).await?;
            if reset {
                let detail = serde_json::json!({"dimension": dimension, "key": key});
                let subject = format!("learning:{dimension}:{key}");
                sql::actions::audit(&mut tx, now, (&by.by, &by.via), "learning.reset", &subject, &detail).await?;
            }
            reset
        }))
    }

    /// Applies the owner's answer if the suggestion still takes one (compare-and-swap on its
    /// revision), and in the same commit records the event for channels, moves the learned
    /// weights and writes what memory learns. `timezone` places the answer in the owner's
    /// day for the time-of-day weight.
    pub async fn respond(
        &self,
        id: SuggestionId,
        response: &Response,
        responder: &Responder,
        timezone: Tz,
        task: Option<&NewTask>,
    ) -> Result<Responded, RespondError> {
        let now = self.clock().now();
        if let Response::Snooze { until } = response
            && *until <= now
        {
            return Err(RespondError::Invalid("snooze_until must be in the future".into()));
        }
        let hour = now.with_timezone(&timezone).hour();
        let result: Result<(Responded, Option<crate::actions::TaskId>), RespondError> =
            in_write_tx!(self, |tx, sql| {
                match load_one!(sql, &mut tx, id) {
                    None => Err(RespondError::NotFound(id)),
                    Some(current) if !current.state.is_answerable() => Err(RespondError::AlreadyDecided {
                        state: current.state,
                        decision: current.decision,
                        snoozed_until: current.snoozed_until,
                    }),
                    Some(current) => {
                        let edited = match response {
                            Response::Edit { action } => Some(action.to_string()),
                            _ => None,
                        };
                        let change = sql::Change {
                            decided: Some((&responder.by, &responder.via)),
                            snoozed_until: match response {
                                Response::Snooze { until } => Some(to_millis(*until)),
                                _ => None,
                            },
                            edited_action: edited.as_deref(),
                            ..sql::Change::default()
                        };
                        let to = response.resulting_state();
                        if !sql::transition(&mut tx, id, current.revision, to, to_millis(now), change).await? {
                            // Lost a race inside the same database: whoever won is on record.
                            let now_row = load_one!(sql, &mut tx, id).ok_or(RespondError::NotFound(id))?;
                            Err(RespondError::AlreadyDecided {
                                state: now_row.state,
                                decision: now_row.decision,
                                snoozed_until: now_row.snoozed_until,
                            })
                        } else {
                            sql::add_event(&mut tx, id, DeliveryKind::Decided, current.revision + 1, to_millis(now))
                                .await?;
                            let lessons = learning::lessons(
                                Some(response),
                                current.ranking.detail.as_ref(),
                                &fallback_features(&current, hour),
                            );
                            apply_lessons!(sql, &mut tx, lessons, now);
                            let memory = match learning::memory_from(Some(response), &current) {
                                Some(candidate) => {
                                    memory_id(&sql::remember(&mut tx, &candidate, to_millis(now)).await?)
                                }
                                None => None,
                            };
                            let detail = serde_json::json!({
                                "response": response.name(),
                                "title": current.title,
                                "edited_action": edited_action_of(response),
                                "memory_id": memory,
                            });
                            let event = format!("suggestion.{}", to.as_str());
                            let (who, subject) =
                                ((responder.by.as_str(), responder.via.as_str()), format!("suggestion:{id}"));
                            sql::actions::audit(&mut tx, to_millis(now), who, &event, &subject, &detail).await?;
                            let task_id = match task {
                                Some(new) => Some(record_task!(sql::actions, &mut tx, new, to_millis(now))),
                                None => None,
                            };
                            let suggestion = load_one!(sql, &mut tx, id).ok_or(RespondError::NotFound(id))?;
                            Ok((Responded { suggestion, memory_id: memory, task: None }, task_id))
                        }
                    }
                }
            });
        let (mut responded, task_id) = result?;
        if let Some(task_id) = task_id {
            responded.task = self.task(task_id).await?;
        }
        Ok(responded)
    }

    /// Brings back what is due (scheduled and snoozed suggestions whose time has come, with
    /// a fresh expiry `fresh_for` from now), expires what outlived its expiry, and marks
    /// surfaced suggestions nobody answered for `ignore_after` as ignored, learning from it.
    pub async fn upkeep(
        &self,
        timezone: Tz,
        fresh_for: Duration,
        ignore_after: Duration,
        bring_back: bool,
    ) -> Result<Upkeep, StoreError> {
        let now = self.clock().now();
        let at = to_millis(now);
        let hour = now.with_timezone(&timezone).hour();
        let stale_before = to_millis(now - ignore_after);
        if !on_read!(self, |conn, sql| { sql::upkeep_pending(&mut conn, at, stale_before, bring_back).await? }) {
            return Ok(Upkeep::default());
        }
        Ok(in_write_tx!(self, |tx, sql| {
            let mut upkeep = Upkeep::default();
            let returning: &[(SuggestionState, &'static str)] = if bring_back {
                &[(SuggestionState::Scheduled, "due_at"), (SuggestionState::Snoozed, "snoozed_until")]
            } else {
                &[]
            };
            for &(state, column) in returning {
                for due in sql::due(&mut tx, state, column, at).await? {
                    let change = sql::Change {
                        clear_decision: true,
                        expires_at: Some(to_millis(now + fresh_for)),
                        ..sql::Change::default()
                    };
                    if sql::transition(&mut tx, due.id, due.revision, SuggestionState::Active, at, change).await? {
                        sql::add_event(&mut tx, due.id, DeliveryKind::Show, due.revision + 1, at).await?;
                        upkeep.came_due.push(due.id);
                    }
                }
            }
            for due in sql::due(&mut tx, SuggestionState::Active, "expires_at", at).await? {
                let change = sql::Change::default();
                if sql::transition(&mut tx, due.id, due.revision, SuggestionState::Expired, at, change).await? {
                    sql::add_event(&mut tx, due.id, DeliveryKind::Update, due.revision + 1, at).await?;
                    upkeep.expired.push(due.id);
                }
            }
            for due in sql::due(&mut tx, SuggestionState::Active, "surfaced_at", stale_before).await? {
                let Some(current) = load_one!(sql, &mut tx, due.id) else { continue };
                // Shown again after a snooze: stale counts from when it came back.
                if to_millis(current.updated_at) > stale_before {
                    continue;
                }
                let change = sql::Change::default();
                if sql::transition(&mut tx, due.id, due.revision, SuggestionState::Ignored, at, change).await? {
                    sql::add_event(&mut tx, due.id, DeliveryKind::Update, due.revision + 1, at).await?;
                    let lessons =
                        learning::lessons(None, current.ranking.detail.as_ref(), &fallback_features(&current, hour));
                    apply_lessons!(sql, &mut tx, lessons, now);
                    if let Some(candidate) = learning::memory_from(None, &current) {
                        sql::remember(&mut tx, &candidate, at).await?;
                    }
                    upkeep.ignored.push(due.id);
                }
            }
            upkeep
        }))
    }

    /// How many scheduled or snoozed suggestions are due at `now`.
    pub async fn count_due(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let at = to_millis(now);
        Ok(on_read!(self, |conn, sql| { sql::count_due(&mut conn, at).await? }))
    }

    pub async fn suggestions_by_id(&self, ids: &[SuggestionId]) -> Result<Vec<Suggestion>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.suggestion(*id).await?);
        }
        Ok(found)
    }

    /// When the next scheduled or snoozed suggestion comes due.
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (scheduled, snoozed) = on_read!(self, |conn, sql| {
            (
                sql::earliest(&mut conn, SuggestionState::Scheduled, "due_at").await?,
                sql::earliest(&mut conn, SuggestionState::Snoozed, "snoozed_until").await?,
            )
        });
        Ok(scheduled.into_iter().chain(snoozed).min().map(from_millis))
    }

    /// Events a channel has not acknowledged yet, oldest first, each with the suggestion as
    /// it is now.
    pub async fn deliveries(&self, channel: &str, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        on_read!(self, |conn, sql| {
            let events = sql::events_after(&mut conn, channel, i64::from(limit.max(1))).await?;
            let mut deliveries = Vec::with_capacity(events.len());
            for (event_id, suggestion_id, kind, revision, created_at) in events {
                let Some(suggestion) = load_one!(sql, &mut conn, suggestion_id) else { continue };
                let kind = DeliveryKind::parse(&kind)
                    .ok_or_else(|| sqlx::Error::Protocol(format!("delivery event {event_id} has a bad kind")))?;
                deliveries.push(Delivery {
                    id: event_id,
                    kind,
                    revision,
                    created_at: from_millis(created_at),
                    suggestion,
                });
            }
            Ok(deliveries)
        })
    }

    /// Marks a channel's events up to `up_to` handled; the cursor never moves back.
    pub async fn ack_deliveries(&self, channel: &str, up_to: i64) -> Result<(), StoreError> {
        in_write_tx!(self, |tx, sql| { sql::ack_events(&mut tx, channel, up_to).await? });
        Ok(())
    }

    /// Records that a channel posted (or updated) a copy of the suggestion.
    pub async fn record_surface(&self, id: SuggestionId, channel: &str, surface_ref: &str) -> Result<(), StoreError> {
        let now = to_millis(self.clock().now());
        in_write_tx!(self, |tx, sql| {
            let revision = sql::suggestion(&mut tx, id).await?.map(|s| s.revision).unwrap_or(1);
            sql::add_surface(&mut tx, id, channel, surface_ref, revision, now).await?
        });
        Ok(())
    }
}
