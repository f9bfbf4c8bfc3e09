-- The ingest transaction's CPU in PostgreSQL (issue 13 item 3): a plain insert first, and a sketch merge
-- that reads the stored sketch once.
--
-- 1. dd_merge. 0013's body looks up each key of the new sketch in the stored one (`a ->> e.key` per key).
-- An hour's stored sketch is large (hundreds of keys, several kB), so it is stored compressed, and every
-- lookup decompressed it again: EXPLAIN ANALYZE of the rollup_hour merge showed ~5 ms per updated hour row
-- (80 rows of one 16,000-point transaction: 440 of its 590 ms). Same formula here, on a copy of the stored
-- sketch decompressed once (`a || '{}'` returns the detoasted value; OFFSET 0 keeps it one evaluation):
-- measured per updated row with a 450-key stored sketch and a 200-key delta, 2.8 ms (0013) -> 0.8-1.0 ms,
-- against 0.6 ms for rewriting the value unchanged (decompress + compress + update).
CREATE OR REPLACE FUNCTION telemetry.dd_merge(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT x.a || coalesce(
        (SELECT jsonb_object_agg(e.key, e.value::bigint + coalesce((x.a ->> e.key)::bigint, 0)) FROM jsonb_each_text(b) e),
        '{}'::jsonb
    )
    FROM (SELECT a || '{}'::jsonb AS a OFFSET 0) x
$$;

-- 2. The upsert without ON CONFLICT when it can.
--
-- Measured (1000-point one-device messages, 16 per transaction, backend CPU per point): INSERT … SELECT
-- from the stage into telemetry.points costs 5.7 us per point as a plain insert and 12.5 us with
-- ON CONFLICT … DO UPDATE (a speculative insertion per row: one more index descent and one more WAL
-- record to confirm it), although in the common case no row conflicts (fresh points). So
-- write_points_stage() first tries the plain insert in a subtransaction; a unique_violation (some key
-- exists: an overwrite, a late duplicate, a redelivered message, or a concurrent writer of the same key
-- that committed first) rolls back only that subtransaction and the batch takes the upsert below,
-- unchanged from 0013. Either way each stage row ends in points_written as before, so the rollup merge,
-- the recompute of overwritten minutes and the returned counts are the same statements:
--   fast path: every row was inserted by this statement, so inserted = fresh = true for all of them;
--   slow path: exactly 0013's upsert (later stream sequence wins, src_seq guard).
-- A plain INSERT waits for an uncommitted concurrent insert of the same key just as ON CONFLICT does,
-- and takes the stage in the same key order, so lock order (and the deadlock argument of 0013) holds.

CREATE OR REPLACE FUNCTION telemetry.write_points_stage()
RETURNS TABLE (src_seq bigint, metric_name text, hour timestamptz, inserted bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    devs text[];
    mets text[];
    mins timestamptz[];
    fast boolean := true;
BEGIN
    -- Fast path: no staged key exists yet (fresh points), a plain insert. Any existing key raises
    -- unique_violation, which undoes this block's insert, and the upsert below runs instead.
    BEGIN
        INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, value_text,
                                      value_bool, value_json, unit, tags, metadata, src_seq, first_seq)
        SELECT s.device_id, s.metric_name, s.time, s.value_type, s.value_num, s.value_text, s.value_bool,
               s.value_json, s.unit, s.tags, s.metadata, s.src_seq, s.src_seq
        FROM points_stage s
        ORDER BY s.device_id, s.metric_name, s.time;
    EXCEPTION WHEN unique_violation THEN
        fast := false;
    END;
    -- Which path this session's last batch took (tests read it; one call per batch).
    PERFORM set_config('telemetry.write_path', CASE WHEN fast THEN 'insert' ELSE 'upsert' END, false);

    IF fast THEN
        -- Every row is fresh and inserted by its own message (first_seq = src_seq).
        INSERT INTO points_written
        SELECT s.device_id, s.metric_name, s.time, s.value_type, s.value_num, s.src_seq, true, true,
               CASE WHEN s.value_type IN (0, 1) THEN telemetry.dd_key(s.value_num) END
        FROM points_stage s;
    ELSE
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
    END IF;

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
