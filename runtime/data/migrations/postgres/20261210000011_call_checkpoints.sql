-- Checkpoints of calls in progress on the nodes of a cluster (PostgreSQL only; docs/cluster.md,
-- "Calls taken over"). A call writes its row each time it enters a flow node and deletes it when
-- it ends; when its owner node is down (heartbeat older than 5 s), a live node claims the row
-- (`owner` becomes that node), re-INVITEs the caller and resumes the flow at `node`.
-- Masked variables are never written here. JSON columns are text, read back with bounded sizes.
CREATE TABLE IF NOT EXISTS call_checkpoints (
    sip_call_id  TEXT PRIMARY KEY,          -- the SIP Call-ID of the caller's dialog
    call_id      TEXT NOT NULL,             -- the call record's key (calls.call_id)
    owner        TEXT NOT NULL,             -- the node that runs the call now
    nodes        TEXT NOT NULL,             -- the nodes that served it, in order ("a,b")
    flow         TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    node         TEXT NOT NULL,             -- the flow node it is in
    language     TEXT NOT NULL,
    variables    TEXT NOT NULL,             -- JSON: name -> value (never a masked one)
    served       TEXT NOT NULL,             -- JSON: tasks completed
    dialog       TEXT NOT NULL,             -- JSON: Call-ID, tags, From/To, Contact, route set, CSeqs
    media        TEXT NOT NULL,             -- JSON: the caller's RTP address, codec, payload types
    caller       TEXT NOT NULL,
    called       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,           -- the call's arrival, local wall-clock milliseconds
    answered_at  BIGINT,
    visit_seq    BIGINT NOT NULL,           -- node visits recorded so far
    written_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_checkpoints_owner ON call_checkpoints (owner);
