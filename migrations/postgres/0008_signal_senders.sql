-- Who wrote before: a workflow triggered by mail "from an unknown sender" asks whether an
-- address had written on a source before a given signal.
CREATE INDEX signals_source_actor ON signals (source, actor_id, seq);
