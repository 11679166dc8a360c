//! Owners bound by pairing and the one-time codes that bind them. Issuing a code, every
//! attempt to redeem one and every change of owner commit with their audit line.

use sqlx::{Acquire, Connection};

use super::{Pools, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::pairing::{
    self, CODE_VALID, CODES_PER_HOUR, FAILURES_PER_ACCOUNT, FAILURES_PER_CHANNEL, IssuedCode, PairChannel, PairedOwner,
    PairingError, Redeemed, Refusal,
};

const HOUR_MS: i64 = 3_600_000;

mod owners_sql {
    macro_rules! owners_sql {
        (mod $module:ident; db = $db:ty;) => {
            pub(crate) mod $module {
                use sqlx::QueryBuilder;

                pub(crate) use crate::store::actions_sql::$module::audit;

                type Conn = <$db as sqlx::Database>::Connection;

                /// `(id, created_at)` of the codes issued for `channel` since `since`.
                pub(crate) async fn codes_since(
                    conn: &mut Conn,
                    channel: &str,
                    since: i64,
                ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("SELECT id, created_at FROM pairing_codes WHERE channel = ");
                    q.push_bind(channel.to_owned()).push(" AND created_at > ").push_bind(since);
                    q.push(" ORDER BY created_at");
                    q.build_query_as().fetch_all(&mut *conn).await
                }

                pub(crate) async fn revoke_open(conn: &mut Conn, channel: &str, now: i64) -> Result<u64, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE pairing_codes SET revoked_at = ");
                    q.push_bind(now).push(" WHERE channel = ").push_bind(channel.to_owned());
                    q.push(" AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ").push_bind(now);
                    Ok(q.build().execute(&mut *conn).await?.rows_affected())
                }

                pub(crate) async fn insert_code(
                    conn: &mut Conn,
                    channel: &str,
                    hash: &str,
                    now: i64,
                    expires_at: i64,
                ) -> Result<i64, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO pairing_codes (channel, code_hash, created_at, expires_at) VALUES (",
                    );
                    q.separated(", ")
                        .push_bind(channel.to_owned())
                        .push_bind(hash.to_owned())
                        .push_bind(now)
                        .push_bind(expires_at);
                    q.push(") RETURNING id");
                    q.build_query_scalar().fetch_one(&mut *conn).await
                }

                /// `(id, expires_at, revoked_at, used_at)` of the code with this hash.
                #[allow(clippy::type_complexity)]
                pub(crate) async fn code(
                    conn: &mut Conn,
                    channel: &str,
                    hash: &str,
                ) -> Result<Option<(i64, i64, Option<i64>, Option<i64>)>, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT id, expires_at, revoked_at, used_at FROM pairing_codes WHERE channel = ",
                    );
                    q.push_bind(channel.to_owned()).push(" AND code_hash = ").push_bind(hash.to_owned());
                    q.build_query_as().fetch_optional(&mut *conn).await
                }

                /// Takes the code for `account` unless someone took it first.
                pub(crate) async fn use_code(
                    conn: &mut Conn,
                    id: i64,
                    account: &str,
                    now: i64,
                ) -> Result<bool, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE pairing_codes SET used_at = ");
                    q.push_bind(now).push(", used_by = ").push_bind(account.to_owned());
                    q.push(" WHERE id = ").push_bind(id).push(" AND used_at IS NULL AND revoked_at IS NULL");
                    Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
                }

                pub(crate) async fn failures_since(
                    conn: &mut Conn,
                    channel: &str,
                    account: Option<&str>,
                    since: i64,
                ) -> Result<i64, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM pairing_attempts WHERE channel = ");
                    q.push_bind(channel.to_owned());
                    if let Some(account) = account {
                        q.push(" AND account = ").push_bind(account.to_owned());
                    }
                    // A refusal for being rate limited is not a guess: counting it would
                    // keep the lock shut for as long as someone keeps knocking.
                    q.push(" AND outcome NOT IN ('paired', 'already_owner', 'rate_limited') AND at > ")
                        .push_bind(since);
                    q.build_query_scalar().fetch_one(&mut *conn).await
                }

                pub(crate) async fn attempt(
                    conn: &mut Conn,
                    channel: &str,
                    account: &str,
                    now: i64,
                    outcome: &str,
                ) -> Result<(), sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO pairing_attempts (channel, account, at, outcome) VALUES (",
                    );
                    q.separated(", ")
                        .push_bind(channel.to_owned())
                        .push_bind(account.to_owned())
                        .push_bind(now)
                        .push_bind(outcome.to_owned());
                    q.push(")");
                    q.build().execute(&mut *conn).await?;
                    Ok(())
                }

                /// When the newest code for `channel` was issued (0: never).
                pub(crate) async fn latest_code_at(conn: &mut Conn, channel: &str) -> Result<i64, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT CAST(COALESCE(MAX(created_at), 0) AS BIGINT) FROM pairing_codes WHERE channel = ",
                    );
                    q.push_bind(channel.to_owned());
                    q.build_query_scalar().fetch_one(&mut *conn).await
                }

                pub(crate) async fn revoke_code(
                    conn: &mut Conn,
                    channel: &str,
                    hash: &str,
                    now: i64,
                ) -> Result<bool, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE pairing_codes SET revoked_at = ");
                    q.push_bind(now).push(" WHERE channel = ").push_bind(channel.to_owned());
                    q.push(" AND code_hash = ").push_bind(hash.to_owned());
                    q.push(" AND used_at IS NULL AND revoked_at IS NULL");
                    Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
                }

                pub(crate) async fn prune_attempts(conn: &mut Conn, before: i64) -> Result<(), sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM pairing_attempts WHERE at < ");
                    q.push_bind(before);
                    q.build().execute(&mut *conn).await?;
                    Ok(())
                }

                pub(crate) async fn is_owner(
                    conn: &mut Conn,
                    channel: &str,
                    account: &str,
                ) -> Result<bool, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM owners WHERE channel = ");
                    q.push_bind(channel.to_owned()).push(" AND account = ").push_bind(account.to_owned());
                    Ok(q.build_query_scalar::<i64>().fetch_one(&mut *conn).await? > 0)
                }

                pub(crate) async fn insert_owner(
                    conn: &mut Conn,
                    channel: &str,
                    account: &str,
                    name: Option<&str>,
                    now: i64,
                    code_id: i64,
                ) -> Result<(), sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO owners (channel, account, name, paired_at, code_id) VALUES (",
                    );
                    q.separated(", ")
                        .push_bind(channel.to_owned())
                        .push_bind(account.to_owned())
                        .push_bind(name.map(str::to_owned))
                        .push_bind(now)
                        .push_bind(code_id);
                    q.push(")");
                    q.build().execute(&mut *conn).await?;
                    Ok(())
                }

                pub(crate) async fn owners(
                    conn: &mut Conn,
                ) -> Result<Vec<(String, String, Option<String>, i64)>, sqlx::Error> {
                    QueryBuilder::<$db>::new(
                        "SELECT channel, account, name, paired_at FROM owners ORDER BY paired_at, channel, account",
                    )
                    .build_query_as()
                    .fetch_all(&mut *conn)
                    .await
                }

                pub(crate) async fn delete_owner(
                    conn: &mut Conn,
                    channel: &str,
                    account: &str,
                ) -> Result<bool, sqlx::Error> {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM owners WHERE channel = ");
                    q.push_bind(channel.to_owned()).push(" AND account = ").push_bind(account.to_owned());
                    Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
                }
            }
        };
    }

    owners_sql! { mod sqlite; db = sqlx::Sqlite; }
    owners_sql! { mod postgres; db = sqlx::Postgres; }
}

impl Store {
    /// Issues a code for `channel`, replacing any code still open for it, and audits it as
    /// done by `by` via `via` (`cli`, `init`). Refused after [`CODES_PER_HOUR`] codes in an
    /// hour.
    pub async fn issue_pairing_code(
        &self,
        channel: PairChannel,
        (by, via): (&str, &str),
    ) -> Result<IssuedCode, PairingError> {
        let now = self.clock().now();
        let at = to_millis(now);
        let code = pairing::generate_code();
        let hash = pairing::hash_code(channel, &code);
        let expires_at = now + CODE_VALID;
        let issued = self.insert_pairing_code(channel, &hash, at, to_millis(expires_at), (by, via)).await?;
        match issued {
            Ok(()) => Ok(IssuedCode { channel, code, expires_at }),
            Err(retry_after) => {
                Err(PairingError::TooManyCodes { channel: channel.as_str(), retry_after: from_millis(retry_after) })
            }
        }
    }

    /// Replaces the channel's open code by a new one; `Err(ms)` with when the next may be
    /// issued if the hour's codes are used up.
    async fn insert_pairing_code(
        &self,
        channel: PairChannel,
        hash: &str,
        at: i64,
        expires_at: i64,
        (by, via): (&str, &str),
    ) -> Result<Result<(), i64>, StoreError> {
        Ok(in_write_tx!(self, owners_sql, |tx, sql| {
            let recent = sql::codes_since(&mut tx, channel.as_str(), at - HOUR_MS).await?;
            if recent.len() as i64 >= CODES_PER_HOUR {
                Err(recent[0].1 + HOUR_MS)
            } else {
                let replaced = sql::revoke_open(&mut tx, channel.as_str(), at).await?;
                // Attempts matter for an hour; a day is plenty for anyone reading them.
                sql::prune_attempts(&mut tx, at - 24 * HOUR_MS).await?;
                let id = sql::insert_code(&mut tx, channel.as_str(), hash, at, expires_at).await?;
                let detail =
                    serde_json::json!({"code": id, "expires_at": from_millis(expires_at), "replaced": replaced});
                sql::audit(&mut tx, at, (by, via), "pairing.issued", &format!("pairing:{}", channel.as_str()), &detail)
                    .await?;
                Ok(())
            }
        }))
    }

    /// `account` (named `name`) on `channel` sends `code`. The first right, live code makes
    /// it an owner; anything else changes only the audit log and the attempt counts. Two
    /// accounts racing with one code: one is paired, the other hears `Used`.
    pub async fn redeem_pairing_code(
        &self,
        channel: PairChannel,
        account: &str,
        name: Option<&str>,
        code: &str,
    ) -> Result<Redeemed, StoreError> {
        let at = to_millis(self.clock().now());
        let hash = pairing::normalize_code(code).map(|code| pairing::hash_code(channel, &code));
        let who = name.unwrap_or(account);
        let via = channel.as_str();
        let subject = format!("owner:{}:{account}", channel.as_str());
        Ok(in_write_tx!(self, owners_sql, |tx, sql| {
            let outcome = if sql::is_owner(&mut tx, via, account).await? {
                Redeemed::AlreadyOwner
            } else if sql::failures_since(&mut tx, via, Some(account), at - HOUR_MS).await? >= FAILURES_PER_ACCOUNT || {
                // The channel's count starts again with each new code: the owner at the
                // machine issuing one lifts a lock strangers' guesses put on.
                let since = (at - HOUR_MS).max(sql::latest_code_at(&mut tx, via).await? - 1);
                sql::failures_since(&mut tx, via, None, since).await? >= FAILURES_PER_CHANNEL
            } {
                Redeemed::Refused(Refusal::RateLimited)
            } else {
                match &hash {
                    None => Redeemed::Refused(Refusal::Unknown),
                    Some(hash) => match sql::code(&mut tx, via, hash).await? {
                        None => Redeemed::Refused(Refusal::Unknown),
                        Some((_, _, _, Some(_))) => Redeemed::Refused(Refusal::Used),
                        Some((_, expires_at, revoked_at, None)) if revoked_at.is_some() || expires_at <= at => {
                            Redeemed::Refused(Refusal::Expired)
                        }
                        Some((id, ..)) => match sql::use_code(&mut tx, id, account, at).await? {
                            false => Redeemed::Refused(Refusal::Used),
                            true => {
                                sql::insert_owner(&mut tx, via, account, name, at, id).await?;
                                let detail = serde_json::json!({"code": id, "name": name});
                                sql::audit(&mut tx, at, (who, via), "owner.paired", &subject, &detail).await?;
                                Redeemed::Paired
                            }
                        },
                    },
                }
            };
            let label = match outcome {
                Redeemed::Paired => "paired",
                Redeemed::AlreadyOwner => "already_owner",
                Redeemed::Refused(why) => why.as_str(),
            };
            sql::attempt(&mut tx, via, account, at, label).await?;
            if let Redeemed::Refused(why) = outcome {
                let detail = serde_json::json!({"reason": why.as_str(), "name": name});
                sql::audit(&mut tx, at, (who, via), "pairing.refused", &subject, &detail).await?;
            }
            outcome
        }))
    }

    /// Withdraws a live code that was shown where others could read it (a group chat).
    /// True if it was live; audited.
    pub async fn revoke_pairing_code(&self, channel: PairChannel, code: &str) -> Result<bool, StoreError> {
        let Some(code) = pairing::normalize_code(code) else { return Ok(false) };
        let hash = pairing::hash_code(channel, &code);
        let at = to_millis(self.clock().now());
        Ok(in_write_tx!(self, owners_sql, |tx, sql| {
            let revoked = sql::revoke_code(&mut tx, channel.as_str(), &hash, at).await?;
            if revoked {
                let subject = format!("pairing:{}", channel.as_str());
                let detail = serde_json::json!({"reason": "shown in a shared chat"});
                sql::audit(&mut tx, at, crate::store::actions::SELF, "pairing.revoked", &subject, &detail).await?;
            }
            revoked
        }))
    }

    /// Every owner bound by pairing, oldest first.
    pub async fn paired_owners(&self) -> Result<Vec<PairedOwner>, StoreError> {
        let rows = on_read!(self, owners_sql, |conn, sql| { sql::owners(&mut conn).await? });
        Ok(rows
            .into_iter()
            .map(|(channel, account, name, paired_at)| PairedOwner {
                channel,
                account,
                name,
                paired_at: from_millis(paired_at),
            })
            .collect())
    }

    /// Unbinds a paired owner (configured ids are the file's to change). False if there
    /// was no such owner; audited as done by `by` via `via`.
    pub async fn remove_owner(
        &self,
        channel: &str,
        account: &str,
        (by, via): (&str, &str),
    ) -> Result<bool, StoreError> {
        let at = to_millis(self.clock().now());
        Ok(in_write_tx!(self, owners_sql, |tx, sql| {
            let removed = sql::delete_owner(&mut tx, channel, account).await?;
            if removed {
                let subject = format!("owner:{channel}:{account}");
                sql::audit(&mut tx, at, (by, via), "owner.removed", &subject, &serde_json::json!({})).await?;
            }
            removed
        }))
    }
}
