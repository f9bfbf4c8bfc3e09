-- The POINTS messages whose notice the device_stats projection has counted (projection_worker/stats_guard.py).
--
-- A notice names the POINTS message it summarises (points_seq). An ingest worker that crashed after publishing
-- a transaction's notices but before acknowledging its POINTS messages stores them again when they are
-- redelivered, one at a time, and publishes their notices again, grouped differently, so under other message
-- ids than the first time: JetStream's de-duplication does not catch them, and the statistics would count those
-- messages' points, hours and minutes twice. The projection counts a notice only if it inserts its sequence here
-- in the same transaction as the counts. Rows are deleted once the ingest consumer has acknowledged the message
-- (its ack floor passed it): such a message is never stored again.
CREATE TABLE IF NOT EXISTS telemetry.stats_counted_points (
    points_seq bigint PRIMARY KEY
);
