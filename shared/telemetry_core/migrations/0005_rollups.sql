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

-- Recompute the minute rollups of the given minutes from raw points (so overwrites and late points
-- are exact), then the hours those minutes fall in from the minute rollups.
CREATE FUNCTION telemetry.refresh_rollups(dev text, metric text, minutes timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := (SELECT min(m) FROM unnest(minutes) m);
    hi timestamptz := (SELECT max(m) FROM unnest(minutes) m) + interval '1 minute';
    hours timestamptz[] := (SELECT array_agg(DISTINCT date_trunc('hour', m)) FROM unnest(minutes) m);
    hlo timestamptz := date_trunc('hour', lo);
    hhi timestamptz := date_trunc('hour', hi) + interval '1 hour';
BEGIN
    DELETE FROM telemetry.rollup_minute WHERE device_id = dev AND metric_name = metric AND bucket = ANY(minutes);
    INSERT INTO telemetry.rollup_minute (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT dev, metric, s.bucket, sum(s.n), sum(s.total), min(s.lo), max(s.hi), jsonb_object_agg(s.key, s.n)
    FROM (
        SELECT date_trunc('minute', time) AS bucket, telemetry.dd_key(value_num) AS key,
               count(*) AS n, sum(value_num) AS total, min(value_num) AS lo, max(value_num) AS hi
        FROM telemetry.points
        WHERE device_id = dev AND metric_name = metric AND time >= lo AND time < hi
          AND value_type IN (0, 1) AND date_trunc('minute', time) = ANY(minutes)
        GROUP BY 1, 2
    ) s
    GROUP BY s.bucket;

    DELETE FROM telemetry.rollup_hour WHERE device_id = dev AND metric_name = metric AND bucket = ANY(hours);
    INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT dev, metric, h.bucket, h.count, h.sum, h.min, h.max, k.sketch
    FROM (
        SELECT date_trunc('hour', bucket) AS bucket, sum(count) AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max
        FROM telemetry.rollup_minute
        WHERE device_id = dev AND metric_name = metric AND bucket >= hlo AND bucket < hhi
          AND date_trunc('hour', bucket) = ANY(hours)
        GROUP BY 1
    ) h
    JOIN (
        SELECT hb AS bucket, jsonb_object_agg(key, n) AS sketch
        FROM (
            SELECT date_trunc('hour', r.bucket) AS hb, e.key, sum(e.value::bigint) AS n
            FROM telemetry.rollup_minute r, jsonb_each_text(r.sketch) e
            WHERE r.device_id = dev AND r.metric_name = metric AND r.bucket >= hlo AND r.bucket < hhi
              AND date_trunc('hour', r.bucket) = ANY(hours)
            GROUP BY 1, 2
        ) x
        GROUP BY hb
    ) k USING (bucket);
END;
$$;
