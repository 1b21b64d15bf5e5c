-- Campaigns (PostgreSQL dialect): every attempt at a number of a campaign's list, and whether
-- each campaign is started or paused (kept across restarts of `ivr serve`).

CREATE TABLE IF NOT EXISTS campaign_attempts (
    id          BIGSERIAL PRIMARY KEY,
    campaign    TEXT NOT NULL,
    phone       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,               -- 1, 2, ...
    started_at  TIMESTAMP NOT NULL,             -- written before the INVITE leaves
    answered_at TIMESTAMP,
    ended_at    TIMESTAMP,
    result      TEXT,                           -- answered | no_answer | busy | failed
    outcome     TEXT,                           -- the flow's outcome when answered
    call_id     TEXT,                           -- the call's records, when answered
    UNIQUE (campaign, phone, attempt)           -- one number is never called twice for one attempt
);
CREATE INDEX IF NOT EXISTS campaign_attempts_started ON campaign_attempts (campaign, started_at);

CREATE TABLE IF NOT EXISTS campaign_states (
    campaign   TEXT PRIMARY KEY,
    running    BOOLEAN NOT NULL,                -- started or paused
    changed_at TIMESTAMP NOT NULL
);
