-- Callbacks (sqlite dialect): a caller who pressed 1 after a queue's callback offer kept their
-- place; an agent takes it, then the caller is dialled through the queue's trunk and bridged.
-- Rows without a result are pending (reloaded by `ivr serve` when it starts).

CREATE TABLE IF NOT EXISTS callbacks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id           TEXT NOT NULL UNIQUE,       -- the call that kept the callback
    queue             TEXT NOT NULL,
    phone             TEXT NOT NULL,              -- the number dialled back
    requested_at      TEXT NOT NULL,          -- when the caller pressed 1
    attempts          INTEGER NOT NULL DEFAULT 0, -- dials of the caller so far
    agent             TEXT,                       -- the agent who took it (last attempt)
    agent_answered_at TEXT,                   -- when that agent answered (last attempt)
    connected_at      TEXT,                   -- when the caller answered
    ended_at          TEXT,
    result            TEXT,                       -- connected | no_answer | failed | cancelled; NULL: pending
    offer             TEXT                        -- JSON: the screen pop, skills and level (a restart offers the same)
);
CREATE INDEX IF NOT EXISTS callbacks_requested ON callbacks (requested_at);
