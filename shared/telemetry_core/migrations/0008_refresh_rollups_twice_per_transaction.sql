-- refresh_rollups called twice in one transaction failed with a duplicate key on rollup_hour: the
-- temp table of touched hours (ON COMMIT DELETE ROWS) still held the first call's hours. The rollups
-- projection does exactly that for a batch touching more than CHUNK minutes, so such a batch failed,
-- was retried and finally applied one notice at a time (found by `make bench`: the rollups consumer
-- fell ~10,000 notices behind). Same function, emptied table first.
CREATE OR REPLACE FUNCTION telemetry.refresh_rollups(devs text[], metrics text[], minutes timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM telemetry.rollup_minute r
    USING unnest(devs, metrics, minutes) AS t(d, m, b)
    WHERE r.device_id = t.d AND r.metric_name = t.m AND r.bucket = t.b;

    INSERT INTO telemetry.rollup_minute (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT t.d, t.m, t.b, sum(s.n), sum(s.total), min(s.lo), max(s.hi), jsonb_object_agg(s.key, s.n)
    FROM unnest(devs, metrics, minutes) AS t(d, m, b)
    CROSS JOIN LATERAL (
        SELECT telemetry.dd_key(p.value_num) AS key, count(*) AS n, sum(p.value_num) AS total,
               min(p.value_num) AS lo, max(p.value_num) AS hi
        FROM telemetry.points p
        WHERE p.device_id = t.d AND p.metric_name = t.m AND p.time >= t.b AND p.time < t.b + interval '1 minute'
          AND p.value_type IN (0, 1)
        GROUP BY 1
    ) s
    GROUP BY t.d, t.m, t.b;

    CREATE TEMP TABLE IF NOT EXISTS touched_hours (d text, m text, hb timestamptz) ON COMMIT DELETE ROWS;
    -- A transaction may call this more than once (the projection sends large batches in chunks): without
    -- emptying the table first, hours of the earlier call would be inserted again -> duplicate key.
    DELETE FROM touched_hours;
    INSERT INTO touched_hours SELECT DISTINCT t.d, t.m, date_trunc('hour', t.b) FROM unnest(devs, metrics, minutes) AS t(d, m, b);

    DELETE FROM telemetry.rollup_hour r USING touched_hours h
    WHERE r.device_id = h.d AND r.metric_name = h.m AND r.bucket = h.hb;

    INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT h.d, h.m, h.hb, a.count, a.sum, a.min, a.max, k.sketch
    FROM touched_hours h
    CROSS JOIN LATERAL (
        SELECT sum(r.count) AS count, sum(r.sum) AS sum, min(r.min) AS min, max(r.max) AS max
        FROM telemetry.rollup_minute r
        WHERE r.device_id = h.d AND r.metric_name = h.m AND r.bucket >= h.hb AND r.bucket < h.hb + interval '1 hour'
    ) a
    CROSS JOIN LATERAL (
        SELECT jsonb_object_agg(x.key, x.n) AS sketch
        FROM (
            SELECT e.key, sum(e.value::bigint) AS n
            FROM telemetry.rollup_minute r, jsonb_each_text(r.sketch) e
            WHERE r.device_id = h.d AND r.metric_name = h.m AND r.bucket >= h.hb
              AND r.bucket < h.hb + interval '1 hour'
            GROUP BY e.key
        ) x
    ) k
    WHERE a.count IS NOT NULL;
END;
$$;
