-- Learning that follows its owner (issue 17): every learned key keeps its evidence, so a
-- ranking can say why ("you acted on 6 of this sender's last 7") and a change of mind is
-- followed; dimensions now include the person, the conversation and the words.
-- `acted` and `dismissed` are answer counts that fade with the same half-life as before
-- (and weigh the latest answers most); `recent` is the last answers, oldest first, one
-- letter each (a act, e edit, s snooze, d dismiss, i ignored); `value` keeps the weight
-- (log-odds of acting) as last written, for anyone reading the table by hand.
ALTER TABLE learned_weights ADD COLUMN acted REAL NOT NULL DEFAULT 0;
ALTER TABLE learned_weights ADD COLUMN dismissed REAL NOT NULL DEFAULT 0;
ALTER TABLE learned_weights ADD COLUMN recent TEXT NOT NULL DEFAULT '';
ALTER TABLE learned_weights ADD COLUMN answers INTEGER NOT NULL DEFAULT 0;

-- Why a suggestion ranks where it does and what an answer to it teaches: JSON
-- {ranked, explored, keys, held_by, estimate, overall}. NULL for suggestions raised before.
ALTER TABLE suggestions ADD COLUMN ranking TEXT;

-- Ideas learning held back, once each, so one in ten per holding key is shown anyway
-- (exploration: a change of mind can only be seen on something shown). `explored` marks
-- the one shown; the count restarts after it.
CREATE TABLE learning_held (
    id         INTEGER PRIMARY KEY,
    idea_key   TEXT    NOT NULL UNIQUE,
    dimension  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    explored   INTEGER NOT NULL DEFAULT 0,
    held_at    INTEGER NOT NULL
);
CREATE INDEX learning_held_key ON learning_held (dimension, key, id);
