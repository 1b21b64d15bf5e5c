-- The nodes of a cluster (PostgreSQL only: a cluster shares one PostgreSQL database).
-- Each node writes its row every second (`last_seen`, the database's clock); a node whose
-- row is older than 5 s is down. `deployment` is the version of the deployment it serves,
-- `flow_versions` each flow's version ("hotline 3f2a..., ...").
CREATE TABLE IF NOT EXISTS cluster_nodes (
    name          TEXT PRIMARY KEY,
    sip           TEXT NOT NULL,
    http          TEXT NOT NULL,
    deployment    TEXT NOT NULL,
    flow_versions TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    last_seen     TIMESTAMPTZ NOT NULL
);

-- The ACD's leadership: the node holding the advisory lock is the leader; `epoch` goes up by
-- one on every takeover, so that a deposed leader (and anything it writes late) is told apart.
CREATE TABLE IF NOT EXISTS acd_leadership (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    node  TEXT,
    since TIMESTAMPTZ
);
INSERT INTO acd_leadership (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
