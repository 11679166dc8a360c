-- Workflow intelligence: suggestions and their surfaces, the events channels consume,
-- the heartbeat's state, the index of reflection runs, and learned ranking weights.
-- Timestamps are Unix milliseconds.
CREATE TABLE suggestions (
    id            INTEGER PRIMARY KEY,
    -- The loop an idea is about ("reminder:42"); raised once, whatever the owner answers.
    idea_key      TEXT    NOT NULL UNIQUE,
    -- A newer suggestion on the same topic (the same conversation) supersedes this one.
    topic         TEXT,
    run_id        TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    why_now       TEXT    NOT NULL,
    -- JSON array of {signal_id, summary}.
    evidence      TEXT    NOT NULL,
    confidence    REAL    NOT NULL,
    -- Confidence weighted by what the owner's answers taught; the order they are shown in.
    score         REAL    NOT NULL,
    -- JSON object {kind, ...}.
    action        TEXT    NOT NULL,
    class         TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    due_at        INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    snoozed_until INTEGER,
    surfaced_at   INTEGER,
    -- Rises on every change of state: a surface showing an older revision is stale.
    revision      INTEGER NOT NULL DEFAULT 1,
    decided_at    INTEGER,
    decided_by    TEXT,
    decided_via   TEXT,
    edited_action TEXT
);
CREATE INDEX suggestions_state_score ON suggestions (state, score);
CREATE INDEX suggestions_topic ON suggestions (topic);

-- Where a suggestion was posted: one row per message, digest line, ...
CREATE TABLE suggestion_surfaces (
    suggestion_id INTEGER NOT NULL REFERENCES suggestions (id),
    channel       TEXT    NOT NULL,
    surface_ref   TEXT    NOT NULL,
    revision      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (suggestion_id, channel, surface_ref)
);
CREATE INDEX suggestion_surfaces_ref ON suggestion_surfaces (channel, surface_ref);

-- What happened to suggestions, in order: "show", "update", "decided". Every channel reads
-- it from its own cursor, so an event is never lost to a channel that was down.
CREATE TABLE delivery_events (
    id            INTEGER PRIMARY KEY,
    suggestion_id INTEGER NOT NULL REFERENCES suggestions (id),
    event         TEXT    NOT NULL,
    revision      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE delivery_cursors (
    channel TEXT    PRIMARY KEY,
    last_id INTEGER NOT NULL
);

-- One row: the heartbeat's memory between pulses (survives restarts).
CREATE TABLE heartbeat_state (
    id                     INTEGER PRIMARY KEY CHECK (id = 1),
    -- The signal seq read up to.
    cursor                 INTEGER NOT NULL DEFAULT 0,
    -- New and actionable signals read since the last reflection.
    carried_new            INTEGER NOT NULL DEFAULT 0,
    carried_actionable     INTEGER NOT NULL DEFAULT 0,
    last_pulse_at          INTEGER,
    -- JSON of the last outcome.
    last_outcome           TEXT,
    last_run_id            TEXT,
    last_reflection_at     INTEGER,
    last_reflection_failed INTEGER NOT NULL DEFAULT 0,
    -- Owner-local date the count is for.
    budget_day             TEXT,
    reflections_today      INTEGER NOT NULL DEFAULT 0,
    -- When a loop seen in the last reflection ripens (a question passes its grace).
    next_followup_at       INTEGER,
    paused                 INTEGER NOT NULL DEFAULT 0
);
INSERT INTO heartbeat_state (id) VALUES (1);

-- The index over reflection/runs/<run_id>/ on disk.
CREATE TABLE reflection_runs (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT    NOT NULL UNIQUE,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    trigger     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    error       TEXT,
    signals     INTEGER NOT NULL DEFAULT 0,
    ideas       INTEGER NOT NULL DEFAULT 0,
    kept        INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL DEFAULT 0,
    -- JSON: {evidence, ideas, critique, decision, dispatch}, as in the files.
    body        TEXT
);

-- What the owner's answers taught, per dimension ("class", "source", "hour") and key.
-- Values decay toward zero from updated_at, so old habits fade.
CREATE TABLE learned_weights (
    dimension  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      REAL    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (dimension, key)
);
