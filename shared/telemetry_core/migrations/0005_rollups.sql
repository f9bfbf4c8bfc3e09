-- Numeric rollups per (device, metric) and minute / hour: count, sum, min, max and a DDSketch.
--
-- The sketch is a DDSketch with gamma = 1.02: value v > 0 falls in bucket ceil(ln v / ln gamma),
-- negatives mirror it, |v| < 1e-9 counts as zero. A quantile read from it is within a relative
-- error of (gamma - 1) / (gamma + 1) = 0.0099 (under 1 %) of a true value of the data; sketches
-- merge by adding counts, so hours are built from minutes and queries merge any number of rows.
-- Stored as jsonb {"p<i>": n, "n<i>": n, "z": n}.
CREATE TABLE telemetry.rollup_minute (
    device_id   text             NOT NULL,
    metric_name text             NOT NULL,
    bucket      timestamptz      NOT NULL,
    count       bigint           NOT NULL,
    sum         double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sketch      jsonb            NOT NULL,
    PRIMARY KEY (device_id, metric_name, bucket)
);
CREATE INDEX rollup_minute_by_metric ON telemetry.rollup_minute (metric_name, bucket);

CREATE TABLE telemetry.rollup_hour (LIKE telemetry.rollup_minute INCLUDING ALL);

CREATE FUNCTION telemetry.dd_key(v double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN abs(v) < 1e-9 THEN 'z'
        WHEN v > 0 THEN 'p' || ceil(ln(v) / ln(1.02))::int
        ELSE 'n' || ceil(ln(-v) / ln(1.02))::int
    END
$$;

-- The representative value of a sketch bucket (its relative-error midpoint), and its sort order.
CREATE FUNCTION telemetry.dd_value(key text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE left(key, 1)
        WHEN 'z' THEN 0.0
        WHEN 'p' THEN 2 * power(1.02, substr(key, 2)::int) / (1.02 + 1)
        ELSE -2 * power(1.02, substr(key, 2)::int) / (1.02 + 1)
    END
$$;

-- Recompute the given (device, metric, minute) rollups from raw points (so overwrites and late
-- points are exact), then the hours they fall in from their minutes. Set-based: the projection
-- calls it once per batch of notices with every bucket the batch touched, each bucket once.
CREATE FUNCTION telemetry.refresh_rollups(devs text[], metrics text[], minutes timestamptz[]) RETURNS void
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
