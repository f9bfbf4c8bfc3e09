-- Each read model owns its tables. A rule's trigger statistics are the alerts projection's: they
-- move out of telemetry.alert_rules (the alert-rules projection's) into a table of their own,
-- joined to the rules at read time. Started from the alerts already projected.
CREATE TABLE telemetry.alert_rule_stats (
    rule_id        text PRIMARY KEY,
    total_triggers bigint      NOT NULL,
    last_triggered timestamptz NOT NULL
);
INSERT INTO telemetry.alert_rule_stats (rule_id, total_triggers, last_triggered)
SELECT rule_id, count(*), max(triggered_at) FROM telemetry.alerts GROUP BY rule_id;
ALTER TABLE telemetry.alert_rules DROP COLUMN total_triggers, DROP COLUMN last_triggered;

-- Migrations 0001, 0003, 0005 and 0006 were edited in place after they had been applied somewhere; a
-- database that applied an earlier text never got those changes. Re-state them here, idempotently (a
-- no-op on a database that has them). Not re-stated: jsonb -> json of value_json / metadata (0001, 0003),
-- which would rewrite the points table.
CREATE OR REPLACE FUNCTION telemetry.ensure_partition(day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('points_p%s', to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(format('telemetry.%I', part)) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7218002);
    IF to_regclass(format('telemetry.%I', part)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE telemetry.%I PARTITION OF telemetry.points FOR VALUES FROM (%L) TO (%L)',
        part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC'
    );
EXCEPTION WHEN duplicate_table THEN
    NULL;  -- created concurrently by another worker since our check: that is what we wanted
END;
$$;
CREATE INDEX IF NOT EXISTS alerts_by_rule ON telemetry.alerts (rule_id, triggered_at DESC);
CREATE INDEX IF NOT EXISTS alerts_by_device ON telemetry.alerts (device_id, triggered_at DESC);
DROP FUNCTION IF EXISTS telemetry.refresh_rollups(text, text, timestamptz[]);  -- the pre-release, per-series form
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
-- src_seq (later write wins) was added to 0001 and 0003 in place: rows from before it count as earliest.
ALTER TABLE telemetry.points ADD COLUMN IF NOT EXISTS src_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE telemetry.points ALTER COLUMN src_seq DROP DEFAULT;
ALTER TABLE telemetry.latest_values ADD COLUMN IF NOT EXISTS src_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE telemetry.latest_values ALTER COLUMN src_seq DROP DEFAULT;
