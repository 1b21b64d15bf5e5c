-- The ACD's queue events (PostgreSQL dialect): one row per thing that happened to a call in a
-- queue. Times are local wall-clock TIMESTAMP (no time zone), like the other tables.
-- A queued call ends in one of answered, abandoned, left; every offered ends in one of
-- answered, declined, ring_timeout, or an abandoned / left naming the agent that was ringing.

CREATE TABLE IF NOT EXISTS queue_events (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMP NOT NULL,
    queue    TEXT NOT NULL,
    call_id  TEXT NOT NULL,
    event    TEXT NOT NULL,    -- queued, offered, answered, declined, ring_timeout, abandoned, left, no_agents
    agent    TEXT,             -- the agent offered (or ringing when the caller left)
    wait_ms  BIGINT,           -- time since queued (NULL for no_agents: never queued)
    detail   TEXT              -- declined: busy, no_answer, failed, agent_offline; left: max_wait, no_agents
);
CREATE INDEX IF NOT EXISTS queue_events_at ON queue_events (at);
CREATE INDEX IF NOT EXISTS queue_events_queue ON queue_events (queue, event);
CREATE INDEX IF NOT EXISTS queue_events_call ON queue_events (call_id);
