-- Owners bound by pairing (issue 20): `loopgate pair telegram|discord` issues a one-time
-- code; the first account that sends it becomes an owner on that channel. Configured ids
-- ([owner] in the file) keep working beside these rows.

-- Only a hash of each code is kept: reading the database does not reveal a live code.
-- `revoked_at` is set when a newer code for the same channel replaces it.
CREATE TABLE pairing_codes (
    id         INTEGER PRIMARY KEY,
    channel    TEXT    NOT NULL,
    code_hash  TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    used_at    INTEGER,
    used_by    TEXT
);
CREATE INDEX pairing_codes_channel ON pairing_codes (channel, created_at);

-- Every attempt to redeem a code, right or wrong: rate limits count the failures.
CREATE TABLE pairing_attempts (
    id      INTEGER PRIMARY KEY,
    channel TEXT    NOT NULL,
    account TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    outcome TEXT    NOT NULL
);
CREATE INDEX pairing_attempts_account ON pairing_attempts (channel, account, at);
CREATE INDEX pairing_attempts_at ON pairing_attempts (channel, at);

CREATE TABLE owners (
    channel   TEXT    NOT NULL,
    account   TEXT    NOT NULL,
    name      TEXT,
    paired_at INTEGER NOT NULL,
    code_id   INTEGER REFERENCES pairing_codes (id),
    PRIMARY KEY (channel, account)
);
