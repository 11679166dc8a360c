-- The signal ledger. Timestamps are Unix milliseconds (INTEGER) on both backends so the
-- same SQL compares and sorts them.
CREATE TABLE signals (
    id              INTEGER PRIMARY KEY,
    -- Rises on every insert and merge: the heartbeat reads what is above its cursor.
    seq             INTEGER NOT NULL,
    fingerprint     TEXT    NOT NULL UNIQUE,
    source          TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    family          TEXT    NOT NULL,
    external_id     TEXT,
    actor_id        TEXT,
    actor_name      TEXT,
    actor_is_owner  INTEGER NOT NULL DEFAULT 0,
    conversation_id TEXT,
    conversation_title TEXT,
    thread_id       TEXT,
    reply_to        TEXT,
    text            TEXT    NOT NULL,
    urgency         INTEGER NOT NULL,
    trust           TEXT    NOT NULL,
    attachments     TEXT    NOT NULL DEFAULT '[]',
    payload         TEXT,
    occurred_at     INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    count           INTEGER NOT NULL DEFAULT 1
);
-- Every write (insert or merge) takes the next seq, so seq order is last-seen order:
-- one index serves the heartbeat's cursor and newest-first listing alike. Each index
-- costs a page write per commit on the ingest path, so there are no others.
CREATE INDEX signals_seq ON signals (seq);
CREATE INDEX signals_expires_at ON signals (expires_at);

-- One row per accepted delivery id, kept longer than the signals themselves so a
-- platform redelivering an old update is still recognised as a duplicate.
CREATE TABLE signal_receipts (
    source      TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    signal_id   INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, external_id)
) WITHOUT ROWID;
CREATE INDEX signal_receipts_received_at ON signal_receipts (received_at);
