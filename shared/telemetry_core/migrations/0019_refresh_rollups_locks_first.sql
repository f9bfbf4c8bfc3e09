-- refresh_rollups replaced a bucket by DELETE then INSERT. Two transactions refreshing one minute at once (the
-- rollups projection's legacy notices and an online replay of it; an ingest transaction's overwritten minutes)
-- raced: the second one's DELETE waited for the first's row lock, found that row deleted when the first
-- committed, deleted nothing (under READ COMMITTED the first's freshly inserted row is not in its snapshot) and
-- its INSERT then failed: duplicate key on rollup_minute_pkey (seen in the online-replay property test).
--
-- Now the function first locks every bucket it will replace, minutes then hours, each in key order, by the
-- zero-delta upsert that write_points_stage uses (0013: the lock order every ingest transaction follows, so no
-- deadlock between them). A bucket not there yet is created empty and replaced below. A transaction that waited
-- for these locks runs its DELETE as a new statement, so it sees and deletes the row the other one committed.
CREATE OR REPLACE FUNCTION telemetry.refresh_rollups(devs text[], metrics text[], minutes timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO telemetry.rollup_minute AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT DISTINCT t.d, t.m, t.b, 0, 0, 'Infinity'::float8, '-Infinity'::float8, '{}'::jsonb
    FROM unnest(devs, metrics, minutes) AS t(d, m, b)
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = r.count;

    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT DISTINCT t.d, t.m, date_trunc('hour', t.b), 0, 0, 'Infinity'::float8, '-Infinity'::float8, '{}'::jsonb
    FROM unnest(devs, metrics, minutes) AS t(d, m, b)
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = r.count;

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
