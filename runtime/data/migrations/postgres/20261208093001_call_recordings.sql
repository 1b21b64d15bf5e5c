-- Whole-call recordings ([recording] in ivr.toml, the `record call` action): rows of
-- `recordings` of kind 'call' next to the record nodes' messages (kind 'message'), with the
-- agent who answered, the queue, and the SHA-256 of the finished WAV file.

ALTER TABLE recordings ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'message';
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS agent TEXT;
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS sha256 TEXT;
CREATE INDEX IF NOT EXISTS recordings_kind ON recordings (kind, recorded_at);
