-- Tasks (every run of an action, with a timeline), approvals (a human's go-ahead before a
-- task runs) and the audit log (every decision and side effect). Timestamps are Unix
-- milliseconds.
CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    -- JSON object {kind, ...}: what runs.
    action        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    -- Where it came from: "suggestion:12", "api".
    origin        TEXT    NOT NULL,
    requested_by  TEXT    NOT NULL,
    requested_via TEXT    NOT NULL,
    -- queued | awaiting_approval | running | succeeded | failed | cancelled
    state         TEXT    NOT NULL,
    risk          TEXT    NOT NULL,
    policy        TEXT    NOT NULL,
    policy_reason TEXT    NOT NULL,
    output        TEXT,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE task_events (
    id      INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    at      INTEGER NOT NULL,
    state   TEXT    NOT NULL,
    note    TEXT    NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, id);

CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL UNIQUE REFERENCES tasks (id),
    -- pending | approved | denied | expired
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    decided_at  INTEGER,
    decided_by  TEXT,
    decided_via TEXT,
    -- Rises on every change: a decision is a compare-and-swap on it.
    revision    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX approvals_state_expires ON approvals (state, expires_at);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    -- Who: "owner", a channel user's name, "loopgate" for what it did by itself.
    actor   TEXT    NOT NULL,
    via     TEXT    NOT NULL,
    -- What: "suggestion.acted", "task.created", "approval.approved", "task.succeeded", ...
    event   TEXT    NOT NULL,
    -- About what: "suggestion:12", "task:4", "approval:3".
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
