-- Outcomes that a supervisor can trust (PostgreSQL dialect). Databases of the previous
-- version get the new column and table; their rows keep the outcomes they were written with
-- (their `ended_by` stays NULL).
--   calls.ended_by: who ended the call: caller, flow, agent, system.
--   served_tasks:   one row per self-service task a call completed (`served "TASK"`).

ALTER TABLE calls ADD COLUMN IF NOT EXISTS ended_by TEXT;

CREATE TABLE IF NOT EXISTS served_tasks (
    id         BIGSERIAL PRIMARY KEY,
    call_id    TEXT NOT NULL,
    flow       TEXT NOT NULL,
    task       TEXT NOT NULL,                 -- the name of `served "NAME"`
    outcome    TEXT,                          -- the call's outcome
    served_at  TIMESTAMP NOT NULL             -- the call's end
);
CREATE INDEX IF NOT EXISTS served_tasks_at ON served_tasks (served_at);
CREATE INDEX IF NOT EXISTS served_tasks_call ON served_tasks (call_id);
