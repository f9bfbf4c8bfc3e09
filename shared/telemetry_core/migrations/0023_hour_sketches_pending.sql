-- Hour sketches merged in batches, not once per ingest transaction (issue 13 item 3).
--
-- A fleet writes the same series all hour, so nearly every ingest transaction updates its series' hour rows,
-- and until now merged each batch's sketch into the stored one: the stored jsonb (100-150 keys by the end of an
-- hour, stored compressed) decompressed, unpacked, rebuilt with the batch's keys, compressed and written again.
-- `make bench-steady` (docs/benchmarks-steady-rollups.md) put that at 5.9 of the 16.6 µs of PostgreSQL CPU the
-- ingest transaction spends per point in steady state.
--
-- Now a batch's sketch for an hour row that already exists is appended to rollup_hour_pending (one small row
-- per series-hour and transaction), and compact_hour_sketches (run by the ingest workers every
-- TELEMETRY_SKETCH_COMPACTION_INTERVAL seconds) folds an hour's pending sketches into its row at once, when it
-- has 8 of them (ingest_worker/sketch_compaction.py) or when the hour is over. A fresh hour row still gets its
-- sketch at once (nothing to merge). count / sum / min / max are merged as before. Readers of hour sketches read
-- the row and its pending sketches together (a percentile adds sketches key by key anyway:
-- gateway/views/aggregates.py), so a pending sketch is never a missing one.
--
-- Why this stays exact (READ COMMITTED, as 0013 argues for the rollups):
-- * a pending row is inserted by the transaction holding its hour row's lock (the upsert locked it first:
--   the insert reads the upsert's RETURNING), so it commits when that lock is released;
-- * compaction locks its hour rows in key order (the order every ingest transaction locks them in, so no
--   deadlock), then, in a new statement, deletes their pending rows and adds exactly the deleted ones to the
--   rows, in one statement: a pending sketch is either still pending or in its row, never both;
-- * refresh_rollups rebuilds an hour from its minutes, which hold everything merged so far: it deletes the
--   hour's pending rows (after locking the hour, so every one committed before is seen).
CREATE TABLE telemetry.rollup_hour_pending (
    device_id text NOT NULL,
    metric_name text NOT NULL,
    bucket timestamptz NOT NULL,
    sketch jsonb NOT NULL
);
CREATE INDEX rollup_hour_pending_series ON telemetry.rollup_hour_pending (device_id, metric_name, bucket);

-- write_points_stage: migration 0022's, but for the hour statement.
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
           coalesce(max(x.hi), '-Infinity'), coalesce(('{' || string_agg('"' || x.key || '":' || x.n, ',') FILTER (WHERE x.key IS NOT NULL) || '}')::jsonb, '{}')
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

    -- The hours: count / sum / min / max merged as before. The batch's sketch goes into a fresh hour row or, for
    -- a row that existed (xmax <> 0: this statement updated it), into rollup_hour_pending (see above). The insert
    -- reads the upsert's RETURNING: it runs after the hour row is locked.
    WITH hours AS MATERIALIZED (
        SELECT x.d, x.m, x.b, sum(x.n) AS n, coalesce(sum(x.total), 0) AS total, coalesce(min(x.lo), 'Infinity') AS lo,
               coalesce(max(x.hi), '-Infinity') AS hi,
               ('{' || string_agg('"' || x.key || '":' || x.n, ',') FILTER (WHERE x.key IS NOT NULL) || '}')::jsonb AS sketch
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
    ), merged AS (
        INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
        SELECT h.d, h.m, h.b, h.n, h.total, h.lo, h.hi, coalesce(h.sketch, '{}')
        FROM hours h
        ORDER BY h.d, h.m, h.b
        ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
            count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
            max = greatest(r.max, EXCLUDED.max)
        RETURNING r.device_id, r.metric_name, r.bucket, r.xmax <> 0 AS existed
    )
    INSERT INTO telemetry.rollup_hour_pending (device_id, metric_name, bucket, sketch)
    SELECT h.d, h.m, h.b, h.sketch
    FROM hours h JOIN merged u ON u.device_id = h.d AND u.metric_name = h.m AND u.bucket = h.b
    WHERE u.existed AND h.sketch IS NOT NULL;

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

-- refresh_rollups: migration 0019's, but for the delete of the rebuilt hours' pending sketches.
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

    -- The hours are rebuilt from their minutes, which hold every point merged so far: their pending sketches
    -- (committed before the hour rows were locked above) are in the minutes too.
    DELETE FROM telemetry.rollup_hour_pending p USING touched_hours h
    WHERE p.device_id = h.d AND p.metric_name = h.m AND p.bucket = h.hb;

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

-- dd_merge of many sketches at once: `a` plus every sketch of the JSON array `sketches`, the stored one unpacked
-- and built again once (0018's dd_merge form; the changed keys' counts from text, as 0022 builds sketches). The
-- compaction passes an hour's pending sketches as that array (its INSERT's sketch column): adding them up first
-- and merging the sum (a sort of every (hour, key) pair of the chunk) cost 1.3x as much CPU.
CREATE FUNCTION telemetry.dd_fold(a jsonb, sketches jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT x.a || coalesce((
        SELECT ('{' || string_agg('"' || k.key || '":' || (k.n + coalesce((x.a ->> k.key)::bigint, 0)), ',') || '}')::jsonb
        FROM (SELECT e.key, sum(e.value::bigint) AS n FROM jsonb_array_elements(sketches) s, jsonb_each_text(s) e
              GROUP BY 1) k
    ), '{}')
    FROM (SELECT a || '{}'::jsonb AS a OFFSET 0) x
$$;

-- Fold the pending sketches of up to max_rows hours (the first in key order) into their rows: the hours with at
-- least min_pending of them, and every hour before closed_before (over: no batch adds to it any more, but for late
-- points). Returns how many hours it took (max_rows: call again). A fold rebuilds the stored sketch once, for what
-- merging each batch at once cost about 2.5 times (docs/benchmarks-steady-rollups.md): an hour that got only one or
-- two batches is left pending until more come or it is over.
CREATE FUNCTION telemetry.compact_hour_sketches(max_rows integer, min_pending integer, closed_before timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    devs text[];
    mets text[];
    hours timestamptz[];
BEGIN
    SELECT array_agg(t.device_id), array_agg(t.metric_name), array_agg(t.bucket) INTO devs, mets, hours
    FROM (SELECT p.device_id, p.metric_name, p.bucket FROM telemetry.rollup_hour_pending p
          GROUP BY 1, 2, 3 HAVING count(*) >= min_pending OR p.bucket < closed_before
          ORDER BY 1, 2, 3 LIMIT max_rows) t;
    IF devs IS NULL THEN
        RETURN 0;
    END IF;
    -- Lock the hour rows first, in key order, as every ingest transaction does (and refresh_rollups, which locks
    -- its hours before deleting their pending sketches: deleting first here could deadlock with it). An upsert,
    -- as refresh_rollups locks: its arbiter is the primary key (a join could probe the (metric, hour) index and
    -- filter every device's row of that hour), and DO UPDATE ... WHERE false locks the row without writing it.
    -- A pending sketch whose hour row retention deleted meanwhile gets an empty row here (count 0, its sketch
    -- below); the next retention run removes both, as the hour is past the cutoff.
    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT t.d, t.m, t.b, 0, 0, 'Infinity', '-Infinity', '{}'
    FROM unnest(devs, mets, hours) AS t(d, m, b)
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = r.count WHERE false;

    -- A new statement: its snapshot holds every pending sketch committed by a transaction that held one of these
    -- locks before. Exactly the deleted ones are added, in the same statement, all of an hour's at once.
    WITH gone AS (
        DELETE FROM telemetry.rollup_hour_pending p USING unnest(devs, mets, hours) AS t(d, m, b)
        WHERE p.device_id = t.d AND p.metric_name = t.m AND p.bucket = t.b
        RETURNING p.device_id, p.metric_name, p.bucket, p.sketch
    )
    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT g.device_id, g.metric_name, g.bucket, 0, 0, 'Infinity', '-Infinity', jsonb_agg(g.sketch)
    FROM gone g
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET sketch = telemetry.dd_fold(r.sketch, EXCLUDED.sketch);
    RETURN cardinality(devs);
END;
$$;
