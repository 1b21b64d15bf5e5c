-- A bridged call's agent leg in its checkpoint (docs/cluster.md, "Calls taken over"): while a
-- caller talks with an agent, the call's row also holds the leg the node placed to the agent's
-- phone (JSON: the ACD's key of the call, the agent, the queue, the leg's dialog as its UAC,
-- its codec, when the agent answered, the screen pop when small), so that the node taking the
-- call over re-INVITEs both legs and bridges them again. NULL: no agent on the call.
ALTER TABLE call_checkpoints ADD COLUMN IF NOT EXISTS agent_leg TEXT;
