-- Rollups maintained in the ingest transaction, additively (issue 13 item 3).
--
-- Before: the rollups projection recomputed every minute a notice touched from raw points, and its
-- hour from its minutes, so every point was written once and read back twice. Now the ingest
-- worker's transaction upserts the points and, in the same transaction, merges the count / sum /
-- min / max / sketch of the points it *inserted* into their minute and hour rows. Only a minute in
-- which a row was *updated* (an overwrite, or the same message applied again after a redelivery:
-- the row exists, so it is not a fresh insert) is recomputed from raw, with refresh_rollups.
--
-- Why this stays exact under concurrent ingest transactions (READ COMMITTED): every transaction
-- locks the rollup rows it touches (the upsert below, in (device, metric, bucket) order, minutes
-- before hours) before any recompute, and each statement of a VOLATILE plpgsql function takes a
-- new snapshot. A recompute therefore runs after every other transaction that already merged into
-- that bucket has committed (it sees their points), and a transaction that merges later has its
-- points uncommitted during the recompute (not seen; its own merge adds them).

-- Set by every update of a point row, never by an insert: RETURNING NOT rewritten tells a row this statement
-- inserted from one it updated (PostgreSQL 16 cannot return xmax from a partitioned table, and
-- first_seq = src_seq is also true for a message applied again). A constant default: no table rewrite.
ALTER TABLE telemetry.points ADD COLUMN rewritten boolean NOT NULL DEFAULT false;

-- Same keys as 0005's dd_key, with explicit text casts: `text || int` is only STABLE (anytextcat), which
-- kept this IMMUTABLE function from being inlined, so every point paid a function call.
CREATE OR REPLACE FUNCTION telemetry.dd_key(v double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN abs(v) < 1e-9 THEN 'z'
        WHEN v > 0 THEN 'p' || (ceil(ln(v) / ln(1.02))::int)::text
        ELSE 'n' || (ceil(ln(-v) / ln(1.02))::int)::text
    END
$$;

-- Sketches merge by adding counts per key (see 0005); '{}' is the empty sketch.
CREATE FUNCTION telemetry.dd_merge(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT a || coalesce(
        (SELECT jsonb_object_agg(e.key, e.value::bigint + coalesce((a ->> e.key)::bigint, 0)) FROM jsonb_each_text(b) e),
        '{}'::jsonb
    )
$$;

-- Updated in place on every batch: leave room on each page so that the update stays on it (HOT).
ALTER TABLE telemetry.rollup_minute SET (fillfactor = 70);
ALTER TABLE telemetry.rollup_hour SET (fillfactor = 70);

-- Upsert the rows of the session's points_stage (COPY target, see ingest_worker/writer.py) into
-- telemetry.points, later stream sequence wins; merge what was inserted into the rollups and
-- recompute the minutes where a row was updated. Returns, per (message, metric, UTC hour), how
-- many rows the message inserted (first_seq = src_seq: also after a crash that lost its notice),
-- for the stats read model (0010). The caller creates points_written (ON COMMIT DELETE ROWS); its key is
-- the sketch key of a fresh numeric row (computed once for the minute and the hour merge).
CREATE FUNCTION telemetry.write_points_stage()
RETURNS TABLE (src_seq bigint, metric_name text, hour timestamptz, inserted bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    devs text[];
    mets text[];
    mins timestamptz[];
BEGIN
    -- fresh: this statement inserted the row (an update sets rewritten).
    -- Kept: fresh numeric rows (merged) and every updated row (its minute is recomputed).
    WITH written AS (
        INSERT INTO telemetry.points AS p (device_id, metric_name, time, value_type, value_num, value_text,
                                           value_bool, value_json, unit, tags, metadata, src_seq, first_seq)
        SELECT s.device_id, s.metric_name, s.time, s.value_type, s.value_num, s.value_text, s.value_bool,
               s.value_json, s.unit, s.tags, s.metadata, s.src_seq, s.src_seq
        FROM points_stage s
        -- Key order: concurrent ingest transactions lock shared point rows in one order (no deadlock).
        ORDER BY s.device_id, s.metric_name, s.time
        ON CONFLICT (device_id, metric_name, time) DO UPDATE SET
            value_type = EXCLUDED.value_type, value_num = EXCLUDED.value_num, value_text = EXCLUDED.value_text,
            value_bool = EXCLUDED.value_bool, value_json = EXCLUDED.value_json, unit = EXCLUDED.unit,
            tags = EXCLUDED.tags, metadata = EXCLUDED.metadata, src_seq = EXCLUDED.src_seq, rewritten = true
        WHERE p.src_seq <= EXCLUDED.src_seq
        RETURNING p.device_id, p.metric_name, p.time, p.value_type, p.value_num, p.src_seq,
                  p.first_seq = p.src_seq AS inserted, NOT p.rewritten AS fresh
    )
    INSERT INTO points_written
    SELECT w.*, CASE WHEN w.fresh AND w.value_type IN (0, 1) THEN telemetry.dd_key(w.value_num) END
    FROM written w WHERE NOT w.fresh OR w.inserted;

    -- Minutes, then hours, each in key order (the lock order every ingest transaction follows).
    -- A minute holding only updated rows gets a zero delta: it is locked, then recomputed below.
    INSERT INTO telemetry.rollup_minute AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT x.d, x.m, x.b, sum(x.n), coalesce(sum(x.total), 0), coalesce(min(x.lo), 'Infinity'),
           coalesce(max(x.hi), '-Infinity'), coalesce(jsonb_object_agg(x.key, x.n) FILTER (WHERE x.key IS NOT NULL), '{}')
    FROM (
        SELECT w.device_id AS d, w.metric_name AS m, date_bin('1 minute', w.time, timestamptz 'epoch') AS b,
               w.key,
               count(*) FILTER (WHERE w.fresh) AS n, sum(w.value_num) FILTER (WHERE w.fresh) AS total,
               min(w.value_num) FILTER (WHERE w.fresh) AS lo, max(w.value_num) FILTER (WHERE w.fresh) AS hi
        FROM points_written w
        WHERE NOT w.fresh OR w.value_type IN (0, 1)
        GROUP BY 1, 2, 3, 4
    ) x
    GROUP BY x.d, x.m, x.b
    ORDER BY x.d, x.m, x.b
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch);

    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT x.d, x.m, x.b, sum(x.n), coalesce(sum(x.total), 0), coalesce(min(x.lo), 'Infinity'),
           coalesce(max(x.hi), '-Infinity'), coalesce(jsonb_object_agg(x.key, x.n) FILTER (WHERE x.key IS NOT NULL), '{}')
    FROM (
        SELECT w.device_id AS d, w.metric_name AS m, date_bin('1 hour', w.time, timestamptz 'epoch') AS b,
               w.key,
               count(*) FILTER (WHERE w.fresh) AS n, sum(w.value_num) FILTER (WHERE w.fresh) AS total,
               min(w.value_num) FILTER (WHERE w.fresh) AS lo, max(w.value_num) FILTER (WHERE w.fresh) AS hi
        FROM points_written w
        WHERE NOT w.fresh OR w.value_type IN (0, 1)
        GROUP BY 1, 2, 3, 4
    ) x
    GROUP BY x.d, x.m, x.b
    ORDER BY x.d, x.m, x.b
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch);

    -- Overwritten (or re-applied) minutes: from raw, with a snapshot taken now that their rows are locked.
    SELECT array_agg(t.d), array_agg(t.m), array_agg(t.b) INTO devs, mets, mins
    FROM (SELECT DISTINCT w.device_id AS d, w.metric_name AS m, date_bin('1 minute', w.time, timestamptz 'epoch') AS b
          FROM points_written w WHERE NOT w.fresh ORDER BY 1, 2, 3) t;
    IF devs IS NOT NULL THEN
        PERFORM telemetry.refresh_rollups(devs, mets, mins);
    END IF;

    RETURN QUERY
    SELECT w.src_seq, w.metric_name, date_bin('1 hour', w.time, timestamptz 'epoch'), count(*)
    FROM points_written w WHERE w.inserted GROUP BY 1, 2, 3;
END;
$$;
