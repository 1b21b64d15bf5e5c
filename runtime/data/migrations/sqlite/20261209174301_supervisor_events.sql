-- What supervisors did on /supervisor (SQLite dialect): one row per action (login, search,
-- play, listen, whisper, barge, ...), who did it, on which call, when (UTC).

CREATE TABLE IF NOT EXISTS supervisor_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    supervisor  TEXT NOT NULL,                  -- [supervisors.ID]
    action      TEXT NOT NULL,                  -- login | search | play | listen | whisper | barge ...
    call_id     TEXT,                           -- the call it was about, if any
    at          TEXT NOT NULL                   -- YYYY-MM-DD HH:MM:SS, UTC
);
CREATE INDEX IF NOT EXISTS supervisor_events_at ON supervisor_events (at);
CREATE INDEX IF NOT EXISTS supervisor_events_supervisor ON supervisor_events (supervisor, at);
