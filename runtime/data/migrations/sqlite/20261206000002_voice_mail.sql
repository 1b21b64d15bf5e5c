-- Voice mail (SQLite dialect): the queue whose agents handle a message left with a `record`
-- node, and what the agents did with it. A message is unheard until an agent played it, open
-- until an agent marked it done.

ALTER TABLE recordings ADD COLUMN queue TEXT;   -- NULL: the flow has no queue; every agent sees it

CREATE TABLE IF NOT EXISTS message_states (
    recording_id INTEGER PRIMARY KEY,           -- recordings.id
    heard_at     TEXT,                          -- first played by an agent
    heard_by     TEXT,
    done_at      TEXT,                          -- marked done (NULL again when reopened)
    done_by      TEXT
);
CREATE INDEX IF NOT EXISTS recordings_queue ON recordings (queue, recorded_at);
