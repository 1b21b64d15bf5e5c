-- The platform's own records (SQLite dialect): one row per call, per node visit, per survey
-- answer and per recording. Times are local wall-clock 'YYYY-MM-DD HH:MM:SS[.fff]' text.
-- Records never hold masked input: node visits name nodes and exits only.

CREATE TABLE IF NOT EXISTS calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id           TEXT NOT NULL,
    caller            TEXT NOT NULL,
    called            TEXT NOT NULL,
    flow              TEXT NOT NULL,
    flow_version      TEXT NOT NULL,
    channel           TEXT NOT NULL,
    started_at        TEXT NOT NULL,          -- the call arrived
    answered_at       TEXT,                   -- the IVR answered it
    ended_at          TEXT,
    outcome           TEXT,                   -- self_service, transferred, abandoned, failed
    queue             TEXT,                   -- the last queue the call waited in
    agent             TEXT,                   -- the agent who answered
    queued_at         TEXT,                   -- entered that queue
    agent_answered_at TEXT,                   -- the agent answered
    wait_ms           INTEGER                 -- time in queue until answered or given up
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id);

CREATE TABLE IF NOT EXISTS node_visits (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id      TEXT NOT NULL,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    seq          INTEGER NOT NULL,            -- 1, 2, ... within the call
    node         TEXT NOT NULL,
    entered_at   TEXT NOT NULL,
    left_at      TEXT,
    exit         TEXT                         -- 'key 1', 'found', 'caller_hangup', ...
);
CREATE INDEX IF NOT EXISTS node_visits_flow ON node_visits (flow, entered_at);
CREATE INDEX IF NOT EXISTS node_visits_call ON node_visits (call_id);

CREATE TABLE IF NOT EXISTS survey_answers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id      TEXT NOT NULL,
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    survey       TEXT NOT NULL,               -- the survey node
    save_table   TEXT NOT NULL,               -- its `save` name
    question     TEXT NOT NULL,
    answer       TEXT,                        -- NULL: no answer
    score        NUMERIC,                     -- the answer when it is a number (scale questions)
    agent        TEXT,
    queue        TEXT,
    saved_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS survey_answers_saved ON survey_answers (saved_at);

CREATE TABLE IF NOT EXISTS recordings (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id      TEXT NOT NULL,
    flow         TEXT NOT NULL,
    node         TEXT NOT NULL,
    save_table   TEXT NOT NULL,
    caller       TEXT NOT NULL,
    file         TEXT,                        -- NULL for simulated calls (no audio)
    length_ms    INTEGER NOT NULL,
    recorded_at  TEXT NOT NULL
);
