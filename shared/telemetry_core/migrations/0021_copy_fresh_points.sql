-- The ingest transaction when every point of a batch is fresh (issue 13 item 3): COPY straight into
-- telemetry.points, and rollup deltas computed by the worker.
--
-- 0018 made the fresh case a plain INSERT … SELECT from the COPY stage, then grouped what it wrote by
-- (minute, sketch key) and again by (hour, sketch key) to merge into the rollups. Measured on 1000-point
-- one-device batches (docs/benchmarks-ingest-copy.md): the stage write, the INSERT … SELECT, points_written
-- and the two groupings cost PostgreSQL about as much as the points themselves. Now the worker
-- (ingest_worker/writer.py) COPYs the batch, in key order, straight into telemetry.points inside a savepoint;
-- a unique_violation (some key exists) rolls back only the savepoint and the batch takes write_points_stage()
-- (0018, unchanged). When the COPY went through, every row is fresh and inserted by its own message, so the
-- worker's per-bucket deltas (ingest_worker/rollup_deltas.py: count, sum, min, max, sketch) are exactly what
-- 0018's fast path would have merged; it COPYs them into the session's rollup_stage and calls this function.
--
-- Lock order is 0013's: point rows in key order (the COPY), then minutes, then hours, each in key order.

CREATE OR REPLACE FUNCTION telemetry.merge_rollup_stage() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Which path this session's last batch took (tests read it; write_points_stage() sets insert / upsert).
    PERFORM set_config('telemetry.write_path', 'copy', false);

    INSERT INTO telemetry.rollup_minute AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT s.device_id, s.metric_name, s.bucket, s.count, s.sum, s.min, s.max, s.sketch
    FROM rollup_stage s WHERE s.grain = 'm'
    ORDER BY s.device_id, s.metric_name, s.bucket
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch);

    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT s.device_id, s.metric_name, s.bucket, s.count, s.sum, s.min, s.max, s.sketch
    FROM rollup_stage s WHERE s.grain = 'h'
    ORDER BY s.device_id, s.metric_name, s.bucket
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch);
END;
$$;
