-- Which stream a checkpoint counts in, and whether its consumer stopped because the stream changed under it.
--
-- A checkpoint is a stream sequence. A stream deleted and created again, or one that lost its unsynced
-- tail in a crash, numbers new messages with sequences the checkpoint already covers: a consumer that
-- trusted it would skip them silently. So each checkpoint records the creation time of the stream it was
-- taken on (JetStream's stream_info.created), and a consumer that finds the stream changed (another
-- creation time, or a last sequence below the checkpoint) stops and says why in `halted`, which
-- /health/detailed shows until `telemetry replay` resets it.
-- Nullable without default: adding them rewrites nothing; a row from before is adopted by the next check.
ALTER TABLE telemetry.projection_checkpoints ADD COLUMN IF NOT EXISTS stream_created timestamptz;
ALTER TABLE telemetry.projection_checkpoints ADD COLUMN IF NOT EXISTS halted text;
