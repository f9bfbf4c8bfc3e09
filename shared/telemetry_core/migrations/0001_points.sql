-- One row per point, partitioned by day so that retention drops partitions instead of rows.
CREATE TABLE telemetry.points (
    device_id   text        NOT NULL,
    metric_name text        NOT NULL,
    time        timestamptz NOT NULL,
    value_type  smallint    NOT NULL,   -- telemetry_schemas.values.ValueType
    value_num   double precision,
    value_text  text,
    value_bool  boolean,
    value_json  json,      -- json, not jsonb: kept verbatim, so numbers read back as written
    unit        text,
    tags        jsonb,
    metadata    json,
    -- POINTS stream sequence of the write: an upsert only replaces a row written earlier in the
    -- stream, so "later wins" holds whatever order concurrent workers or redeliveries commit in.
    src_seq     bigint      NOT NULL,
    PRIMARY KEY (device_id, metric_name, time)
) PARTITION BY RANGE (time);

-- Create the partition holding `day` unless it exists. Callers: the ingest worker (for days a
-- batch touches) and start-up (days ahead). The advisory lock makes concurrent callers safe.
CREATE FUNCTION telemetry.ensure_partition(day date) RETURNS void
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
