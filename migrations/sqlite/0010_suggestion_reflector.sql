-- Which reflector raised a suggestion: the deterministic one, or the owner's model.
ALTER TABLE suggestions ADD COLUMN reflector TEXT NOT NULL DEFAULT 'deterministic';
