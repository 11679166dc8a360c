-- Every call to the owner's model: what for, how many tokens, how it went. The day (in
-- UTC) sums them for the daily budget.
CREATE TABLE model_calls (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    day           TEXT    NOT NULL,
    purpose       TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    error         TEXT
);
CREATE INDEX model_calls_day ON model_calls (day);
