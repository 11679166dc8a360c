-- What channels need to keep across restarts, beside the outbox.

-- What happened to approvals, in order: "show" (requested), "decided" (approved or
-- denied), "update" (expired). Channels read it from their own cursor in
-- delivery_cursors (key "approvals:<channel>"), as they read delivery_events, so an
-- approval is posted to every owner channel and every copy learns the outcome.
CREATE TABLE approval_events (
    id          INTEGER PRIMARY KEY,
    approval_id INTEGER NOT NULL REFERENCES approvals (id),
    event       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Small per-channel facts: Telegram's update offset, an IMAP mailbox's UIDVALIDITY.
CREATE TABLE channel_state (
    channel    TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (channel, key)
);

-- A reply to a posted message (the answer to an Edit prompt) is matched to the send that
-- posted it.
CREATE INDEX outbox_platform_ref ON outbox (channel, platform_ref);
