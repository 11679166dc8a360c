-- The durable outbox: every message a channel sends is a row here first. A send is marked
-- started (state 'sending', attempts + 1) in its own commit before it leaves, so a crash
-- between the send and its record is visible at the next start and is never blindly
-- repeated. Timestamps are Unix milliseconds.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    channel         TEXT    NOT NULL,
    -- What this send is ("suggestion:12:r3:show"): the same thing enqueued twice is one send.
    dedupe_key      TEXT    NOT NULL UNIQUE,
    -- The rendered message, in the channel's own terms (JSON).
    payload         TEXT    NOT NULL,
    -- queued | sending | sent | failed | uncertain
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    -- The platform's id for what was sent (a message id), once known.
    platform_ref    TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (channel, state, next_attempt_at);
