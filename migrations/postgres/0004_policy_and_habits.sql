-- Policy's view of each suggestion's action, and a cheap way to the owner's own signals.

-- The risk class of a suggestion's action and what policy said of it when it was raised
-- ("allow" runs when the owner acts, "ask" waits for an approval). Rows from before this
-- migration are classified as the built-in rules would have classified them.
ALTER TABLE suggestions ADD COLUMN risk TEXT NOT NULL DEFAULT 'low';
ALTER TABLE suggestions ADD COLUMN policy TEXT NOT NULL DEFAULT 'allow';
UPDATE suggestions SET risk = 'medium', policy = 'ask'
    WHERE action LIKE '%"kind":"message"%' OR action LIKE '%"kind":"workflow"%';
UPDATE suggestions SET risk = 'high', policy = 'ask'
    WHERE action LIKE '%"kind":"webhook"%' OR action LIKE '%"kind":"command"%';

-- The recurring-task detector reads weeks of the owner's own messages; among a ledger of
-- everyone's, they are few. A partial index costs a write only for the owner's signals.
CREATE INDEX signals_owner_seq ON signals (seq) WHERE actor_is_owner;
