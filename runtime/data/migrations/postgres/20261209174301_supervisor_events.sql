-- What supervisors did on /supervisor (PostgreSQL dialect): one row per action (login,
-- search, play, listen, whisper, barge, ...), who did it, on which call, when (UTC).

CREATE TABLE IF NOT EXISTS supervisor_events (
    id          BIGSERIAL PRIMARY KEY,
    supervisor  TEXT NOT NULL,
    action      TEXT NOT NULL,
    call_id     TEXT,
    at          TIMESTAMP NOT NULL              -- UTC
);
CREATE INDEX IF NOT EXISTS supervisor_events_at ON supervisor_events (at);
CREATE INDEX IF NOT EXISTS supervisor_events_supervisor ON supervisor_events (supervisor, at);
