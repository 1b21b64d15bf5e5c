-- Voice mail (PostgreSQL dialect): the queue whose agents handle a message left with a
-- `record` node, and what the agents did with it. A message is unheard until an agent played
-- it, open until an agent marked it done.

ALTER TABLE recordings ADD COLUMN IF NOT EXISTS queue TEXT;   -- NULL: every agent sees it

CREATE TABLE IF NOT EXISTS message_states (
    recording_id BIGINT PRIMARY KEY,            -- recordings.id
    heard_at     TIMESTAMP,                     -- first played by an agent
    heard_by     TEXT,
    done_at      TIMESTAMP,                     -- marked done (NULL again when reopened)
    done_by      TEXT
);
CREATE INDEX IF NOT EXISTS recordings_queue ON recordings (queue, recorded_at);
