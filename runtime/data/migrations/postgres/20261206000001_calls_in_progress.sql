-- Calls whose flow is running (PostgreSQL dialect): a row is written when a call starts and
-- removed with the call's row in `calls` when it ends. Rows left by a run that was killed
-- (kill -9, power loss) become `calls` rows with the outcome `failed` when the next run starts.

CREATE TABLE IF NOT EXISTS calls_in_progress (
    id           BIGSERIAL PRIMARY KEY,
    call_id      TEXT NOT NULL,
    caller       TEXT NOT NULL,
    called       TEXT NOT NULL,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    channel      TEXT NOT NULL,
    started_at   TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_in_progress_call ON calls_in_progress (call_id);
