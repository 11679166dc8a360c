-- Memory: durable knowledge about the owner. Timestamps are Unix milliseconds.
CREATE TABLE memories (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    -- What the memory is about ("suggestion-class:reminder", "person:dana"); memories of
    -- one kind about one subject are merged into one. Empty when there is none.
    subject     TEXT    NOT NULL DEFAULT '',
    content     TEXT    NOT NULL,
    -- Hash of the normalised content: the same statement learned twice is one memory.
    content_key TEXT    NOT NULL,
    confidence  REAL    NOT NULL,
    -- How many independent observations confirmed it.
    stability   INTEGER NOT NULL DEFAULT 1,
    origin      TEXT    NOT NULL,
    trust       TEXT    NOT NULL,
    -- JSON array of the signal ids it was learned from.
    evidence    TEXT    NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX memories_kind_content_key ON memories (kind, content_key);
CREATE INDEX memories_kind_subject ON memories (kind, subject);
CREATE INDEX memories_updated_at ON memories (updated_at);

-- kind is indexed too, so a search filtered by kind is one MATCH that FTS5 can rank and
-- cut to the best few by itself (a join filtering afterwards has to rank every match).
CREATE VIRTUAL TABLE memories_fts USING fts5(
    kind, subject, content,
    content = 'memories', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
-- How many memories contain each term: lets a search see that a word is too common for
-- ranking every match to be worth it (see search_sqlite).
CREATE VIRTUAL TABLE memories_fts_terms USING fts5vocab(memories_fts, 'row');

CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, kind, subject, content) VALUES (new.id, new.kind, new.subject, new.content);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, kind, subject, content) VALUES ('delete', old.id, old.kind, old.subject, old.content);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF kind, subject, content ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, kind, subject, content) VALUES ('delete', old.id, old.kind, old.subject, old.content);
    INSERT INTO memories_fts (rowid, kind, subject, content) VALUES (new.id, new.kind, new.subject, new.content);
END;

-- What the owner told loopgate to forget, so it is not learned again from the same
-- evidence (the owner may still add it back by hand).
CREATE TABLE memory_tombstones (
    kind         TEXT    NOT NULL,
    content_key  TEXT    NOT NULL,
    forgotten_at INTEGER NOT NULL,
    PRIMARY KEY (kind, content_key)
) WITHOUT ROWID;
