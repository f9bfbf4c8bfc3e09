-- Per-metric hourly rollup over all devices (issue 13 item 4): a 7-day average across 1,000 devices
-- reads 168 rows instead of 168,000 rollup_hour rows. Count / sum / min / max only: percentiles
-- across devices still merge the per-device sketches of rollup_hour.
--
-- Kept by the rollups projection (projection_worker/projections/rollups.py), which recomputes the
-- (metric, hour) pairs its notices touched from rollup_hour. Not additive in the ingest transaction
-- on purpose: every ingest transaction of every device would then lock the same few rows per metric
-- and hour, and serialise. A recompute from committed rollup_hour rows is exact whatever the order:
-- a notice is published after its points' transaction committed, so the recompute its notice
-- causes sees them.
CREATE TABLE telemetry.rollup_metric_hour (
    metric_name text             NOT NULL,
    bucket      timestamptz      NOT NULL,
    count       bigint           NOT NULL,
    sum         double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    devices     integer          NOT NULL,  -- device rows merged in (for inspection; no query needs it)
    PRIMARY KEY (metric_name, bucket) INCLUDE (count, sum, min, max)
);

INSERT INTO telemetry.rollup_metric_hour (metric_name, bucket, count, sum, min, max, devices)
SELECT metric_name, bucket, sum(count), sum(sum), min(min), max(max), count(*)
FROM telemetry.rollup_hour GROUP BY metric_name, bucket;

-- The (metric, hour) pairs given, each from its rollup_hour rows; a pair with none left is deleted.
CREATE FUNCTION telemetry.refresh_metric_hours(metrics text[], hours timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM telemetry.rollup_metric_hour r
    USING unnest(metrics, hours) AS t(m, b)
    WHERE r.metric_name = t.m AND r.bucket = t.b
      AND NOT EXISTS (SELECT 1 FROM telemetry.rollup_hour h WHERE h.metric_name = t.m AND h.bucket = t.b);

    INSERT INTO telemetry.rollup_metric_hour AS r (metric_name, bucket, count, sum, min, max, devices)
    SELECT h.metric_name, h.bucket, sum(h.count), sum(h.sum), min(h.min), max(h.max), count(*)
    FROM unnest(metrics, hours) AS t(m, b)
    JOIN telemetry.rollup_hour h ON h.metric_name = t.m AND h.bucket = t.b
    GROUP BY h.metric_name, h.bucket
    ORDER BY h.metric_name, h.bucket
    ON CONFLICT (metric_name, bucket) DO UPDATE SET
        count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, devices = EXCLUDED.devices;
END;
$$;

-- rollup_hour by (metric, hour) covering what the recompute above and cross-device queries read,
-- so both are index-only scans on settled hours. rollup_hour's older (metric_name, bucket) index
-- (named after rollup_minute's, copied by LIKE … INCLUDING ALL) is replaced by it.
CREATE INDEX rollup_hour_by_metric_covering ON telemetry.rollup_hour (metric_name, bucket)
    INCLUDE (device_id, count, sum, min, max);
DROP INDEX IF EXISTS telemetry.rollup_hour_metric_name_bucket_idx;
