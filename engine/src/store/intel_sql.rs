//! The SQL of workflow intelligence (suggestions, surfaces, delivery events, heartbeat
//! state, reflection runs, learned weights), written once and compiled per backend like
//! `sql.rs`: `QueryBuilder` writes `?` or `$n` placeholders as the backend wants.

use loopgate_policies::{Effect, Risk};

use crate::clock::from_millis;
use crate::learning::{Dimension, StoredWeight};
use crate::suggestion::{Decision, Suggestion, SuggestionState, Surface};

pub(crate) const SUGGESTION_COLUMNS: &str = "id, idea_key, topic, run_id, title, why_now, evidence, confidence, \
     score, action, class, source, state, due_at, created_at, updated_at, expires_at, snoozed_until, surfaced_at, \
     revision, decided_at, decided_by, decided_via, edited_action, risk, policy, reflector, ranking";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SuggestionRow {
    pub(crate) id: i64,
    idea_key: String,
    #[allow(dead_code)]
    topic: Option<String>,
    run_id: String,
    title: String,
    why_now: String,
    evidence: String,
    confidence: f64,
    score: f64,
    action: String,
    class: String,
    source: String,
    reflector: String,
    state: String,
    due_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    snoozed_until: Option<i64>,
    surfaced_at: Option<i64>,
    pub(crate) revision: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    decided_via: Option<String>,
    edited_action: Option<String>,
    risk: String,
    policy: String,
    /// JSON [`crate::learning::Ranking`]; NULL for suggestions raised before it was kept.
    ranking: Option<String>,
}

impl SuggestionRow {
    pub(crate) fn into_suggestion(self, surfaces: Vec<Surface>) -> Result<Suggestion, sqlx::Error> {
        let corrupt = |what: &str| sqlx::Error::Protocol(format!("suggestion {} has a bad {what}", self.id));
        let decision = match (self.decided_at, &self.decided_by, &self.decided_via) {
            (Some(at), Some(by), Some(via)) => Some(Decision { by: by.clone(), via: via.clone(), at: from_millis(at) }),
            _ => None,
        };
        Ok(Suggestion {
            id: self.id,
            evidence: serde_json::from_str(&self.evidence).map_err(|_| corrupt("evidence"))?,
            action: serde_json::from_str(&self.action).map_err(|_| corrupt("action"))?,
            state: SuggestionState::parse(&self.state).ok_or_else(|| corrupt("state"))?,
            risk: Risk::parse(&self.risk).ok_or_else(|| corrupt("risk"))?,
            policy: Effect::parse(&self.policy).ok_or_else(|| corrupt("policy"))?,
            edited_action: self
                .edited_action
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|_| corrupt("edited action"))?,
            title: self.title,
            why_now: self.why_now,
            confidence: self.confidence,
            score: self.score,
            class: self.class,
            source: self.source,
            reflector: self.reflector,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            expires_at: from_millis(self.expires_at),
            snoozed_until: self.snoozed_until.map(from_millis),
            due_at: self.due_at.map(from_millis),
            surfaced_at: self.surfaced_at.map(from_millis),
            revision: self.revision,
            decision,
            surfaces,
            ranking: self
                .ranking
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|_| corrupt("ranking"))?
                .unwrap_or_default(),
            run_id: self.run_id,
            key: self.idea_key,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SurfaceRow {
    pub(crate) suggestion_id: i64,
    channel: String,
    surface_ref: String,
    revision: i64,
    created_at: i64,
}

impl SurfaceRow {
    pub(crate) fn into_surface(self) -> Surface {
        Surface {
            channel: self.channel,
            surface_ref: self.surface_ref,
            revision: self.revision,
            created_at: from_millis(self.created_at),
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WeightRow {
    dimension: String,
    key: String,
    acted: f64,
    dismissed: f64,
    recent: String,
    answers: i64,
    updated_at: i64,
}

impl WeightRow {
    /// `None` for a dimension this version does not know (written by a newer one).
    pub(crate) fn into_weight(self) -> Option<StoredWeight> {
        Some(StoredWeight {
            dimension: Dimension::parse(&self.dimension)?,
            key: self.key,
            acted: self.acted,
            dismissed: self.dismissed,
            recent: self.recent,
            answers: self.answers,
            updated_at: from_millis(self.updated_at),
        })
    }
}

pub(crate) const WEIGHT_COLUMNS: &str = "dimension, key, acted, dismissed, recent, answers, updated_at";

/// An idea learning held back (or showed anyway), oldest first.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HeldRow {
    pub(crate) idea_key: String,
    pub(crate) dimension: String,
    pub(crate) key: String,
    pub(crate) explored: i64,
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub(crate) struct HeartbeatRow {
    pub(crate) cursor: i64,
    pub(crate) carried_new: i64,
    pub(crate) carried_actionable: i64,
    pub(crate) last_pulse_at: Option<i64>,
    pub(crate) last_outcome: Option<String>,
    pub(crate) last_run_id: Option<String>,
    pub(crate) last_reflection_at: Option<i64>,
    pub(crate) last_reflection_failed: i64,
    pub(crate) budget_day: Option<String>,
    pub(crate) reflections_today: i64,
    pub(crate) next_followup_at: Option<i64>,
    pub(crate) paused: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub(crate) run_id: String,
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) trigger: String,
    pub(crate) reason: String,
    pub(crate) status: String,
    pub(crate) error: Option<String>,
    pub(crate) signals: i64,
    pub(crate) ideas: i64,
    pub(crate) kept: i64,
    pub(crate) created: i64,
    pub(crate) body: Option<String>,
}

pub(crate) const RUN_COLUMNS: &str =
    "run_id, started_at, finished_at, trigger, reason, status, error, signals, ideas, kept, created";

/// A due or stale suggestion found by maintenance: its id and what it was about.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DueRow {
    pub(crate) id: i64,
    pub(crate) revision: i64,
}

macro_rules! intel_sql {
    (mod $module:ident; db = $db:ty; remember = $remember:path;) => {
        pub(crate) mod $module {
            use std::collections::HashSet;

            use sqlx::QueryBuilder;

            pub(crate) use $remember as remember;
            /// Tasks and the audit log, for answers that create a task in the same commit.
            pub(crate) use crate::store::actions_sql::$module as actions;

            use super::{
                DueRow, HeartbeatRow, HeldRow, RUN_COLUMNS, RunRow, SUGGESTION_COLUMNS, SuggestionRow, SurfaceRow,
                WEIGHT_COLUMNS, WeightRow,
            };
            use crate::learning::{Dimension, HeldIdea, Ranking, StoredWeight};
            use crate::store::intel::{NewSuggestion, RunRecord};
            use crate::suggestion::{DeliveryKind, SuggestionId, SuggestionState};

            type Conn = <$db as sqlx::Database>::Connection;

            pub(crate) async fn suggestion(
                conn: &mut Conn,
                id: SuggestionId,
            ) -> Result<Option<SuggestionRow>, sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new(format!("SELECT {SUGGESTION_COLUMNS} FROM suggestions WHERE id = "));
                q.push_bind(id);
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            /// Newest first within a state, best score first among active ones.
            pub(crate) async fn suggestions(
                conn: &mut Conn,
                states: &[SuggestionState],
                limit: i64,
            ) -> Result<Vec<SuggestionRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT {SUGGESTION_COLUMNS} FROM suggestions"));
                if !states.is_empty() {
                    q.push(" WHERE state IN (");
                    let mut list = q.separated(", ");
                    for state in states {
                        list.push_bind(state.as_str());
                    }
                    q.push(")");
                }
                q.push(" ORDER BY score DESC, id DESC LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn surfaces(conn: &mut Conn, ids: &[i64]) -> Result<Vec<SurfaceRow>, sqlx::Error> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT suggestion_id, channel, surface_ref, revision, created_at FROM suggestion_surfaces \
                     WHERE suggestion_id IN (",
                );
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                q.push(") ORDER BY created_at, channel");
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn existing_keys(conn: &mut Conn, keys: &[String]) -> Result<HashSet<String>, sqlx::Error> {
                Ok(key_states(conn, keys).await?.into_iter().map(|(key, _, _)| key).collect())
            }

            /// Which of these idea keys became suggestions: their state and when it last
            /// changed.
            pub(crate) async fn key_states(
                conn: &mut Conn,
                keys: &[String],
            ) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
                let mut found = Vec::new();
                for chunk in keys.chunks(500) {
                    let mut q =
                        QueryBuilder::<$db>::new("SELECT idea_key, state, updated_at FROM suggestions WHERE idea_key IN (");
                    let mut list = q.separated(", ");
                    for key in chunk {
                        list.push_bind(key.clone());
                    }
                    q.push(")");
                    let rows: Vec<(String, String, i64)> = q.build_query_as().fetch_all(&mut *conn).await?;
                    found.extend(rows);
                }
                Ok(found)
            }

            pub(crate) async fn count_in(conn: &mut Conn, state: SuggestionState) -> Result<i64, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM suggestions WHERE state = ");
                q.push_bind(state.as_str());
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            /// Open suggestions on a topic, which a newer one supersedes.
            pub(crate) async fn open_on_topic(conn: &mut Conn, topic: &str) -> Result<Vec<DueRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT id, revision FROM suggestions WHERE topic = ");
                q.push_bind(topic.to_owned());
                q.push(" AND state IN ('scheduled', 'active', 'snoozed')");
                q.build_query_as().fetch_all(&mut *conn).await
            }

            /// Inserts unless a suggestion for the same loop exists; returns the new id.
            pub(crate) async fn insert(
                conn: &mut Conn,
                s: &NewSuggestion,
                ranking: &Ranking,
                run_id: &str,
                now: i64,
            ) -> Result<Option<i64>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO suggestions (idea_key, topic, run_id, title, why_now, evidence, confidence, score, \
                     action, class, source, state, due_at, created_at, updated_at, expires_at, risk, policy, reflector, \
                     ranking) VALUES (",
                );
                let mut v = q.separated(", ");
                v.push_bind(s.key.clone())
                    .push_bind(s.topic.clone())
                    .push_bind(run_id.to_owned())
                    .push_bind(s.title.clone())
                    .push_bind(s.why_now.clone())
                    .push_bind(serde_json::to_string(&s.evidence).expect("evidence serializes"))
                    .push_bind(s.confidence)
                    .push_bind(s.score)
                    .push_bind(s.action.to_string())
                    .push_bind(s.class.clone())
                    .push_bind(s.source.clone())
                    .push_bind(s.state.as_str())
                    .push_bind(s.due_at)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(s.expires_at)
                    .push_bind(s.risk.as_str())
                    .push_bind(s.policy.as_str())
                    .push_bind(s.reflector.clone())
                    .push_bind((ranking != &Ranking::default()).then(|| serde_json::to_string(ranking).expect("a ranking serializes")));
                q.push(") ON CONFLICT (idea_key) DO NOTHING RETURNING id");
                q.build_query_scalar().fetch_optional(&mut *conn).await
            }

            /// Moves a suggestion to `to` if it is still at `revision` (compare-and-swap).
            /// Decision columns are set when `decided` is given, cleared otherwise.
            pub(crate) async fn transition(
                conn: &mut Conn,
                id: SuggestionId,
                revision: i64,
                to: SuggestionState,
                now: i64,
                change: Change<'_>,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE suggestions SET state = ");
                q.push_bind(to.as_str());
                q.push(", revision = revision + 1, updated_at = ").push_bind(now);
                if let Some((by, via)) = change.decided {
                    q.push(", decided_at = ").push_bind(now);
                    q.push(", decided_by = ").push_bind(by.to_owned());
                    q.push(", decided_via = ").push_bind(via.to_owned());
                }
                if change.clear_decision {
                    q.push(", decided_at = NULL, decided_by = NULL, decided_via = NULL");
                }
                if let Some(until) = change.snoozed_until {
                    q.push(", snoozed_until = ").push_bind(until);
                }
                if let Some(action) = change.edited_action {
                    q.push(", edited_action = ").push_bind(action.to_owned());
                }
                if let Some(expires) = change.expires_at {
                    q.push(", expires_at = ").push_bind(expires);
                }
                q.push(" WHERE id = ").push_bind(id).push(" AND revision = ").push_bind(revision);
                Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
            }

            /// Suggestions in `state` whose `column` time has come.
            pub(crate) async fn due(
                conn: &mut Conn,
                state: SuggestionState,
                column: &'static str,
                at_or_before: i64,
            ) -> Result<Vec<DueRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("SELECT id, revision FROM suggestions WHERE state = ");
                q.push_bind(state.as_str());
                q.push(format!(" AND {column} IS NOT NULL AND {column} <= ")).push_bind(at_or_before);
                q.push(" ORDER BY id");
                q.build_query_as().fetch_all(&mut *conn).await
            }

            /// Scheduled and snoozed suggestions whose time has come.
            pub(crate) async fn count_due(conn: &mut Conn, at: i64) -> Result<i64, sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new("SELECT COUNT(*) FROM suggestions WHERE (state = 'scheduled' AND due_at <= ");
                q.push_bind(at).push(") OR (state = 'snoozed' AND snoozed_until <= ").push_bind(at).push(")");
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            /// Whether upkeep has anything to do, so a pulse with nothing due never takes the
            /// write lock.
            pub(crate) async fn upkeep_pending(
                conn: &mut Conn,
                at: i64,
                stale_before: i64,
                bring_back: bool,
            ) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM suggestions WHERE (state = 'active' AND (expires_at <= ",
                );
                q.push_bind(at).push(" OR surfaced_at <= ").push_bind(stale_before).push("))");
                if bring_back {
                    q.push(" OR (state = 'scheduled' AND due_at <= ").push_bind(at).push(")");
                    q.push(" OR (state = 'snoozed' AND snoozed_until <= ").push_bind(at).push(")");
                }
                q.push(" LIMIT 1) AS pending");
                let found: i64 = q.build_query_scalar().fetch_one(&mut *conn).await?;
                Ok(found > 0)
            }

            pub(crate) async fn earliest(
                conn: &mut Conn,
                state: SuggestionState,
                column: &'static str,
            ) -> Result<Option<i64>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!("SELECT MIN({column}) FROM suggestions WHERE state = "));
                q.push_bind(state.as_str());
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            pub(crate) async fn add_event(
                conn: &mut Conn,
                id: SuggestionId,
                kind: DeliveryKind,
                revision: i64,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO delivery_events (suggestion_id, event, revision, created_at) VALUES (",
                );
                q.separated(", ").push_bind(id).push_bind(kind.as_str()).push_bind(revision).push_bind(now);
                q.push(")");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn events_after(
                conn: &mut Conn,
                channel: &str,
                limit: i64,
            ) -> Result<Vec<(i64, i64, String, i64, i64)>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT id, suggestion_id, event, revision, created_at FROM delivery_events WHERE id > \
                     COALESCE((SELECT last_id FROM delivery_cursors WHERE channel = ",
                );
                q.push_bind(channel.to_owned());
                q.push("), 0) ORDER BY id LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn ack_events(conn: &mut Conn, channel: &str, up_to: i64) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO delivery_cursors (channel, last_id) VALUES (");
                q.separated(", ").push_bind(channel.to_owned()).push_bind(up_to);
                q.push(") ON CONFLICT (channel) DO UPDATE SET last_id = CASE WHEN delivery_cursors.last_id > ");
                q.push("excluded.last_id THEN delivery_cursors.last_id ELSE excluded.last_id END");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// Records a posted copy; the first one marks the suggestion surfaced.
            pub(crate) async fn add_surface(
                conn: &mut Conn,
                id: SuggestionId,
                channel: &str,
                surface_ref: &str,
                revision: i64,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO suggestion_surfaces (suggestion_id, channel, surface_ref, revision, created_at) VALUES (",
                );
                q.separated(", ")
                    .push_bind(id)
                    .push_bind(channel.to_owned())
                    .push_bind(surface_ref.to_owned())
                    .push_bind(revision)
                    .push_bind(now);
                q.push(") ON CONFLICT (suggestion_id, channel, surface_ref) DO UPDATE SET revision = excluded.revision");
                q.build().execute(&mut *conn).await?;
                let mut q = QueryBuilder::<$db>::new("UPDATE suggestions SET surfaced_at = ");
                q.push_bind(now).push(" WHERE surfaced_at IS NULL AND id = ").push_bind(id);
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn heartbeat(conn: &mut Conn) -> Result<HeartbeatRow, sqlx::Error> {
                QueryBuilder::<$db>::new(
                    "SELECT cursor, carried_new, carried_actionable, last_pulse_at, last_outcome, last_run_id, \
                     last_reflection_at, last_reflection_failed, budget_day, reflections_today, next_followup_at, \
                     paused FROM heartbeat_state WHERE id = 1",
                )
                .build_query_as()
                .fetch_one(&mut *conn)
                .await
            }

            pub(crate) async fn save_heartbeat(conn: &mut Conn, h: &HeartbeatRow) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE heartbeat_state SET cursor = ");
                q.push_bind(h.cursor);
                q.push(", carried_new = ").push_bind(h.carried_new);
                q.push(", carried_actionable = ").push_bind(h.carried_actionable);
                q.push(", last_pulse_at = ").push_bind(h.last_pulse_at);
                q.push(", last_outcome = ").push_bind(h.last_outcome.clone());
                q.push(", last_run_id = ").push_bind(h.last_run_id.clone());
                q.push(", last_reflection_at = ").push_bind(h.last_reflection_at);
                q.push(", last_reflection_failed = ").push_bind(h.last_reflection_failed);
                q.push(", budget_day = ").push_bind(h.budget_day.clone());
                q.push(", reflections_today = ").push_bind(h.reflections_today);
                q.push(", next_followup_at = ").push_bind(h.next_followup_at);
                q.push(" WHERE id = 1");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn set_paused(conn: &mut Conn, paused: bool) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE heartbeat_state SET paused = ");
                q.push_bind(i64::from(paused)).push(" WHERE id = 1");
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn start_run(
                conn: &mut Conn,
                started_at: i64,
                trigger: &str,
                reason: &str,
            ) -> Result<i64, sqlx::Error> {
                // The run id is made from the row id, so the row is written first with a
                // placeholder that cannot collide.
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO reflection_runs (run_id, started_at, trigger, reason, status) VALUES (",
                );
                q.separated(", ")
                    .push_bind(format!("pending-{started_at}-{reason}"))
                    .push_bind(started_at)
                    .push_bind(trigger.to_owned())
                    .push_bind(reason.to_owned())
                    .push_bind("running");
                q.push(") RETURNING id");
                q.build_query_scalar().fetch_one(&mut *conn).await
            }

            pub(crate) async fn name_run(conn: &mut Conn, id: i64, run_id: &str) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE reflection_runs SET run_id = ");
                q.push_bind(run_id.to_owned()).push(" WHERE id = ").push_bind(id);
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn finish_run(conn: &mut Conn, r: &RunRecord, body: &str) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("UPDATE reflection_runs SET finished_at = ");
                q.push_bind(r.finished_at.map(crate::clock::to_millis));
                q.push(", status = ").push_bind(r.status.clone());
                q.push(", error = ").push_bind(r.error.clone());
                q.push(", signals = ").push_bind(r.signals);
                q.push(", ideas = ").push_bind(r.ideas);
                q.push(", kept = ").push_bind(r.kept);
                q.push(", created = ").push_bind(r.created);
                q.push(", body = ").push_bind(body.to_owned());
                q.push(" WHERE run_id = ").push_bind(r.run_id.clone());
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn runs(conn: &mut Conn, limit: i64) -> Result<Vec<RunRow>, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {RUN_COLUMNS}, NULL AS body FROM reflection_runs ORDER BY id DESC LIMIT "
                ));
                q.push_bind(limit);
                q.build_query_as().fetch_all(&mut *conn).await
            }

            pub(crate) async fn run(conn: &mut Conn, run_id: &str) -> Result<Option<RunRow>, sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new(format!("SELECT {RUN_COLUMNS}, body FROM reflection_runs WHERE run_id = "));
                q.push_bind(run_id.to_owned());
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn weights(conn: &mut Conn) -> Result<Vec<WeightRow>, sqlx::Error> {
                QueryBuilder::<$db>::new(format!("SELECT {WEIGHT_COLUMNS} FROM learned_weights"))
                    .build_query_as()
                    .fetch_all(&mut *conn)
                    .await
            }

            pub(crate) async fn weight(
                conn: &mut Conn,
                dimension: Dimension,
                key: &str,
            ) -> Result<Option<WeightRow>, sqlx::Error> {
                let mut q =
                    QueryBuilder::<$db>::new(format!("SELECT {WEIGHT_COLUMNS} FROM learned_weights WHERE dimension = "));
                q.push_bind(dimension.as_str()).push(" AND key = ").push_bind(key.to_owned());
                q.build_query_as().fetch_optional(&mut *conn).await
            }

            pub(crate) async fn put_weight(conn: &mut Conn, w: &StoredWeight) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO learned_weights (dimension, key, value, acted, dismissed, recent, answers, updated_at) \
                     VALUES (",
                );
                q.separated(", ")
                    .push_bind(w.dimension.as_str())
                    .push_bind(w.key.clone())
                    .push_bind(w.value(w.updated_at))
                    .push_bind(w.acted)
                    .push_bind(w.dismissed)
                    .push_bind(w.recent.clone())
                    .push_bind(w.answers)
                    .push_bind(crate::clock::to_millis(w.updated_at));
                q.push(
                    ") ON CONFLICT (dimension, key) DO UPDATE SET value = excluded.value, acted = excluded.acted, \
                     dismissed = excluded.dismissed, recent = excluded.recent, answers = excluded.answers, \
                     updated_at = excluded.updated_at",
                );
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// Forgets a key's evidence and what it held back; false if it had none.
            pub(crate) async fn reset_weight(conn: &mut Conn, dimension: &str, key: &str) -> Result<bool, sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("DELETE FROM learned_weights WHERE dimension = ");
                q.push_bind(dimension.to_owned()).push(" AND key = ").push_bind(key.to_owned());
                let gone = q.build().execute(&mut *conn).await?.rows_affected() > 0;
                let mut q = QueryBuilder::<$db>::new("DELETE FROM learning_held WHERE dimension = ");
                q.push_bind(dimension.to_owned()).push(" AND key = ").push_bind(key.to_owned());
                let held = q.build().execute(&mut *conn).await?.rows_affected() > 0;
                Ok(gone || held)
            }

            /// Evidence nothing has touched since `before`: faded to nothing, so dropped.
            pub(crate) async fn prune_weights(conn: &mut Conn, before: i64) -> Result<(), sqlx::Error> {
                let mut q = QueryBuilder::<$db>::new("DELETE FROM learned_weights WHERE updated_at < ");
                q.push_bind(before);
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(crate) async fn held(conn: &mut Conn) -> Result<Vec<HeldRow>, sqlx::Error> {
                QueryBuilder::<$db>::new("SELECT idea_key, dimension, key, explored FROM learning_held ORDER BY id")
                    .build_query_as()
                    .fetch_all(&mut *conn)
                    .await
            }

            /// Remembers ideas held back (once each: a second time changes nothing) and
            /// drops those held longer ago than `before`.
            pub(crate) async fn record_held(
                conn: &mut Conn,
                held: &[HeldIdea],
                now: i64,
                before: i64,
            ) -> Result<(), sqlx::Error> {
                for h in held {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO learning_held (idea_key, dimension, key, explored, held_at) VALUES (",
                    );
                    q.separated(", ")
                        .push_bind(h.idea_key.clone())
                        .push_bind(h.by.dimension.clone())
                        .push_bind(h.by.key.clone())
                        .push_bind(i64::from(h.explored))
                        .push_bind(now);
                    q.push(") ON CONFLICT (idea_key) DO NOTHING");
                    q.build().execute(&mut *conn).await?;
                }
                let mut q = QueryBuilder::<$db>::new("DELETE FROM learning_held WHERE held_at < ");
                q.push_bind(before);
                q.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// What a transition changes besides the state.
            #[derive(Debug, Default, Clone, Copy)]
            pub(crate) struct Change<'a> {
                pub(crate) decided: Option<(&'a str, &'a str)>,
                pub(crate) clear_decision: bool,
                pub(crate) snoozed_until: Option<i64>,
                pub(crate) edited_action: Option<&'a str>,
                pub(crate) expires_at: Option<i64>,
            }
        }
    };
}

intel_sql! { mod sqlite; db = sqlx::Sqlite; remember = crate::store::memories::remember_sqlite; }
intel_sql! { mod postgres; db = sqlx::Postgres; remember = crate::store::memories::remember_postgres; }
