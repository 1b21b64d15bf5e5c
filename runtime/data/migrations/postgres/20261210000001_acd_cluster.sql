-- The cluster-wide ACD (docs/cluster.md), PostgreSQL only.
--
-- Agents' registrations, whichever node took the REGISTER: one row per agent and contact
-- (the registrar takes only configured agents, so at most agents x their phones' contacts);
-- a removal deletes the row, an expired one is ignored and deleted by the next write of
-- that agent. `addr` is where the INVITE to the phone goes (HOST:PORT), `transport` udp or
-- tcp, `node` the node that took the REGISTER.
CREATE TABLE IF NOT EXISTS acd_registrations (
    agent         TEXT NOT NULL,
    contact       TEXT NOT NULL,
    addr          TEXT NOT NULL,
    transport     TEXT NOT NULL,
    node          TEXT NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent, contact)
);

-- The leader's ACD: its state for the other nodes' pages (`snapshot`: agents, queues,
-- screen pops, today's figures) and for the next leader's rebuild (`state`: the calls in
-- the queues with their node, and the agents talking, away or in wrap-up). One row, written
-- by the leader after every change and only while `acd_leadership.epoch` is still the
-- leader's own (`epoch` here says which leader wrote it).
CREATE TABLE IF NOT EXISTS acd_state (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch      BIGINT NOT NULL,
    node       TEXT NOT NULL,
    written_at TIMESTAMPTZ NOT NULL,
    snapshot   TEXT NOT NULL,
    state      TEXT NOT NULL
);
