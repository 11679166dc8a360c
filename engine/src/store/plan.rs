//! Turning a batch of deliveries into the rows one transaction writes.
//!
//! Pure, so the rules of exactly-once and merging are tested without a database: a
//! delivery whose `(source, external_id)` is already known is a duplicate; two deliveries
//! in one batch with the same id are one delivery; deliveries with the same fingerprint
//! become one row whose count is their number.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::IngestOutcome;
use crate::clock::to_millis;
use crate::signal::{Family, NewSignal, SignalId, Urgency};

/// A delivery with everything the ledger derives from it, computed outside the writer so
/// the single writer task does as little as possible.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub signal: NewSignal,
    pub fingerprint: String,
    pub family: Family,
    pub received_at: i64,
    pub occurred_at: i64,
    pub expires_at: i64,
    pub attachments_json: String,
    pub payload_json: Option<String>,
}

impl Prepared {
    pub fn new(signal: NewSignal, now: DateTime<Utc>, retention: chrono::Duration) -> Prepared {
        let received_at = to_millis(now);
        Prepared {
            fingerprint: signal.fingerprint(),
            family: signal.family(),
            occurred_at: signal.occurred_at.map(to_millis).unwrap_or(received_at),
            expires_at: received_at.saturating_add(retention.num_milliseconds()),
            received_at,
            attachments_json: serde_json::to_string(&signal.attachments).expect("attachments serialize"),
            payload_json: signal.payload.as_ref().map(|p| p.to_string()),
            signal,
        }
    }

    pub fn receipt_key(&self) -> Option<(&str, &str)> {
        self.signal.external_id.as_deref().map(|id| (self.signal.source.as_str(), id))
    }
}

/// One row of the upsert: the first delivery of a fingerprint, carrying the batch's
/// aggregate count, latest sighting and highest urgency.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub first: &'a Prepared,
    pub count: i64,
    pub last_seen: i64,
    pub urgency: Urgency,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Already in the receipts table.
    Known(SignalId),
    /// Same `(source, external_id)` as an earlier delivery in this batch.
    RepeatOf(usize),
    /// Written as part of row `row`; `first` says whether it opened that row.
    Fresh { row: usize, first: bool },
}

#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub rows: Vec<Row<'a>>,
    slots: Vec<Slot>,
}

impl<'a> Plan<'a> {
    pub fn new(items: &'a [Prepared], known: &HashMap<(String, String), SignalId>) -> Plan<'a> {
        let mut rows: Vec<Row<'a>> = Vec::new();
        let mut row_of_fingerprint: HashMap<&str, usize> = HashMap::new();
        let mut first_with_key: HashMap<(&str, &str), usize> = HashMap::new();
        let mut slots = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if let Some(key) = item.receipt_key() {
                if let Some(id) = known.get(&(key.0.to_owned(), key.1.to_owned())) {
                    slots.push(Slot::Known(*id));
                    continue;
                }
                if let Some(&earlier) = first_with_key.get(&key) {
                    slots.push(Slot::RepeatOf(earlier));
                    continue;
                }
                first_with_key.insert(key, index);
            }
            match row_of_fingerprint.get(item.fingerprint.as_str()) {
                Some(&row) => {
                    let agg = &mut rows[row];
                    agg.count += 1;
                    agg.last_seen = agg.last_seen.max(item.received_at);
                    agg.urgency = agg.urgency.max(item.signal.urgency);
                    agg.expires_at = agg.expires_at.max(item.expires_at);
                    slots.push(Slot::Fresh { row, first: false });
                }
                None => {
                    row_of_fingerprint.insert(&item.fingerprint, rows.len());
                    slots.push(Slot::Fresh { row: rows.len(), first: true });
                    rows.push(Row {
                        first: item,
                        count: 1,
                        last_seen: item.received_at,
                        urgency: item.signal.urgency,
                        expires_at: item.expires_at,
                    });
                }
            }
        }
        Plan { rows, slots }
    }

    /// The receipts to insert: each new `(source, external_id)` with the row it landed in.
    pub fn new_receipts(&self, items: &'a [Prepared]) -> Vec<(&'a Prepared, usize)> {
        self.slots
            .iter()
            .zip(items)
            .filter_map(|(slot, item)| match slot {
                Slot::Fresh { row, .. } if item.receipt_key().is_some() => Some((item, *row)),
                _ => None,
            })
            .collect()
    }

    /// Answers per delivery, given for each row the id it got and its count after the
    /// write (a count above the batch's own means an older signal absorbed it).
    pub fn outcomes(&self, written: &[(SignalId, i64)]) -> Vec<IngestOutcome> {
        let mut out: Vec<IngestOutcome> = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let outcome = match *slot {
                Slot::Known(id) => IngestOutcome { id, duplicate: true, merged: false },
                Slot::RepeatOf(earlier) => IngestOutcome { id: out[earlier].id, duplicate: true, merged: false },
                Slot::Fresh { row, first } => {
                    let (id, count_after) = written[row];
                    let existed_before = count_after > self.rows[row].count;
                    IngestOutcome { id, duplicate: false, merged: !first || existed_before }
                }
            };
            out.push(outcome);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{SignalKind, Source};

    fn item(external_id: Option<&str>, text: &str, urgency: Urgency, at: i64) -> Prepared {
        let mut s = NewSignal::new(Source::parse("telegram").unwrap(), SignalKind::parse("message").unwrap(), text);
        s.external_id = external_id.map(str::to_owned);
        s.urgency = urgency;
        let now = crate::clock::from_millis(at);
        Prepared::new(s, now, chrono::Duration::days(1))
    }

    #[test]
    fn known_receipts_are_duplicates() {
        let items = [item(Some("7"), "hi", Urgency::Normal, 1)];
        let known = HashMap::from([(("telegram".to_owned(), "7".to_owned()), 99)]);
        let plan = Plan::new(&items, &known);
        assert!(plan.rows.is_empty());
        assert!(plan.new_receipts(&items).is_empty());
        assert_eq!(plan.outcomes(&[]), vec![IngestOutcome { id: 99, duplicate: true, merged: false }]);
    }

    #[test]
    fn repeats_inside_a_batch_are_one_delivery() {
        let items = [item(Some("7"), "hi", Urgency::Normal, 1), item(Some("7"), "hi", Urgency::Normal, 2)];
        let plan = Plan::new(&items, &HashMap::new());
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].count, 1);
        assert_eq!(plan.new_receipts(&items).len(), 1);
        let out = plan.outcomes(&[(5, 1)]);
        assert_eq!(out[0], IngestOutcome { id: 5, duplicate: false, merged: false });
        assert_eq!(out[1], IngestOutcome { id: 5, duplicate: true, merged: false });
    }

    #[test]
    fn same_fingerprint_merges_with_count_last_seen_and_highest_urgency() {
        let items = [
            item(Some("1"), "Disk full", Urgency::Normal, 10),
            item(Some("2"), "disk  FULL", Urgency::Critical, 30),
            item(None, "disk full", Urgency::Low, 20),
            item(Some("3"), "something else", Urgency::Low, 40),
        ];
        let plan = Plan::new(&items, &HashMap::new());
        assert_eq!(plan.rows.len(), 2);
        assert_eq!(plan.rows[0].count, 3);
        assert_eq!(plan.rows[0].last_seen, 30);
        assert_eq!(plan.rows[0].urgency, Urgency::Critical);
        // Every external id is recorded, even the merged ones, so each redelivery is a duplicate.
        assert_eq!(plan.new_receipts(&items).len(), 3);
        let out = plan.outcomes(&[(1, 3), (2, 1)]);
        assert_eq!(
            out.iter().map(|o| (o.id, o.merged)).collect::<Vec<_>>(),
            [(1, false), (1, true), (1, true), (2, false)]
        );
    }

    #[test]
    fn a_count_above_the_batch_means_an_older_signal_absorbed_it() {
        let items = [item(None, "ping", Urgency::Normal, 1)];
        let plan = Plan::new(&items, &HashMap::new());
        assert_eq!(plan.outcomes(&[(3, 4)]), vec![IngestOutcome { id: 3, duplicate: false, merged: true }]);
    }
}
