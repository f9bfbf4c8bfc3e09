"""The per-series chunk table of the storage prototype (docs/storage-chunks.md), in a throwaway schema.

Benchmark-only: ``tests/bench/chunk_store.py`` creates schema ``chunkbench`` in its own PostgreSQL and drops
it with the server. Nothing here is a migration; it is the DDL a migration would ship, measured first.

One row per (device, metric, UTC hour, write): the points of one series that one ingest transaction wrote
into one hour, as parallel arrays sorted by time. A chunk never crosses an hour, so the rollup hour of a
chunk is known from ``t_min`` and every lookup for a time range is a bounded key-range scan.
"""

SCHEMA = "chunkbench"

# Stage tables live in the session (ON COMMIT DELETE ROWS), like the ingest worker's points_stage.
# chunk_stage: the batch's chunks plus their hour; agg_stage: per-minute ('m') and per-hour ('h') count / sum /
# min / max / sketch of each chunk, computed in Python before COPY; chunk_overlap: the series-hours of the batch
# that meet stored points (their minutes are recomputed, the rest merged additively).
STAGES = (
    "CREATE TEMP TABLE IF NOT EXISTS chunk_stage (device_id text, metric_name text, t_min timestamptz, "
    "t_max timestamptz, src_seq bigint, n integer, ts timestamptz[], seqs bigint[], vals double precision[], "
    "hour timestamptz) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS agg_stage (device_id text, metric_name text, kind text, "
    "bucket timestamptz, hour timestamptz, count bigint, sum double precision, min double precision, "
    "max double precision, sketch jsonb) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS chunk_overlap (device_id text, metric_name text, hour timestamptz) "
    "ON COMMIT DELETE ROWS",
)
CHUNK_STAGE_COLUMNS = "device_id, metric_name, t_min, t_max, src_seq, n, ts, seqs, vals, hour"
CHUNK_STAGE_TYPES = [
    "text", "text", "timestamptz", "timestamptz", "int8", "int4", "timestamptz[]", "int8[]", "float8[]", "timestamptz",
]  # fmt: skip
AGG_STAGE_COLUMNS = "device_id, metric_name, kind, bucket, hour, count, sum, min, max, sketch"
AGG_STAGE_TYPES = ["text", "text", "text", "timestamptz", "timestamptz", "int8", "float8", "float8", "float8", "jsonb"]

DDL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};

-- seqs is NULL when every point has the chunk's src_seq (one message per series per batch: the common case);
-- otherwise it holds each point's POINTS sequence (a batch that merged several messages of one series).
-- Key: a redelivered message rebuilds the same chunk (same series, t_min and src_seq): ON CONFLICT DO NOTHING
-- makes the replay a no-op. Partitioned by day on t_min, like telemetry.points, so retention drops partitions.
CREATE TABLE {SCHEMA}.points_chunk (
    device_id   text          NOT NULL,
    metric_name text          NOT NULL,
    t_min       timestamptz   NOT NULL,
    t_max       timestamptz   NOT NULL,   -- < date_bin('1 hour', t_min) + 1 hour: chunks never cross an hour
    src_seq     bigint        NOT NULL,   -- the highest POINTS sequence of its points
    n           integer       NOT NULL,
    ts          timestamptz[] NOT NULL,   -- ascending, no duplicates within a chunk
    seqs        bigint[],
    vals        double precision[] NOT NULL,
    PRIMARY KEY (device_id, metric_name, t_min, src_seq)
) PARTITION BY RANGE (t_min);

-- The rollups the gateway reads, same shape as telemetry's (0005, 0013), kept from the chunks' arrays.
CREATE TABLE {SCHEMA}.rollup_minute (LIKE telemetry.rollup_minute INCLUDING ALL) WITH (fillfactor = 70);
CREATE TABLE {SCHEMA}.rollup_hour (LIKE telemetry.rollup_hour INCLUDING ALL) WITH (fillfactor = 70);

-- Recompute the given (device, metric, minute) rollups from the chunks, later-wins resolved, then their hours
-- from their minutes: telemetry.refresh_rollups (0005/0008) reading chunks instead of rows.
CREATE FUNCTION {SCHEMA}.refresh_minutes(devs text[], metrics text[], minutes timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {SCHEMA}.rollup_minute r USING unnest(devs, metrics, minutes) AS t(d, m, b)
    WHERE r.device_id = t.d AND r.metric_name = t.m AND r.bucket = t.b;

    INSERT INTO {SCHEMA}.rollup_minute (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT t.d, t.m, t.b, sum(s.n), sum(s.total), min(s.lo), max(s.hi), jsonb_object_agg(s.key, s.n)
    FROM unnest(devs, metrics, minutes) AS t(d, m, b)
    CROSS JOIN LATERAL (
        SELECT telemetry.dd_key(x.v) AS key, count(*) AS n, sum(x.v) AS total, min(x.v) AS lo, max(x.v) AS hi
        FROM (
            SELECT DISTINCT ON (u.t) u.v
            FROM {SCHEMA}.points_chunk c,
                 unnest(c.ts, c.vals, coalesce(c.seqs, array_fill(c.src_seq, ARRAY[c.n]))) AS u(t, v, s)
            WHERE c.device_id = t.d AND c.metric_name = t.m
              AND c.t_min >= date_bin('1 hour', t.b, timestamptz 'epoch') AND c.t_min < t.b + interval '1 minute'
              AND c.t_max >= t.b AND u.t >= t.b AND u.t < t.b + interval '1 minute'
            ORDER BY u.t, u.s DESC
        ) x
        GROUP BY 1
    ) s
    GROUP BY t.d, t.m, t.b;

    DELETE FROM {SCHEMA}.rollup_hour r
    USING (SELECT DISTINCT t.d, t.m, date_bin('1 hour', t.b, timestamptz 'epoch') AS hb
           FROM unnest(devs, metrics, minutes) AS t(d, m, b)) h
    WHERE r.device_id = h.d AND r.metric_name = h.m AND r.bucket = h.hb;

    INSERT INTO {SCHEMA}.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT h.d, h.m, h.hb, a.count, a.sum, a.min, a.max, k.sketch
    FROM (SELECT DISTINCT t.d, t.m, date_bin('1 hour', t.b, timestamptz 'epoch') AS hb
          FROM unnest(devs, metrics, minutes) AS t(d, m, b)) h
    CROSS JOIN LATERAL (
        SELECT sum(r.count) AS count, sum(r.sum) AS sum, min(r.min) AS min, max(r.max) AS max
        FROM {SCHEMA}.rollup_minute r
        WHERE r.device_id = h.d AND r.metric_name = h.m AND r.bucket >= h.hb AND r.bucket < h.hb + interval '1 hour'
    ) a
    CROSS JOIN LATERAL (
        SELECT jsonb_object_agg(x.key, x.n) AS sketch
        FROM (SELECT e.key, sum(e.value::bigint) AS n
              FROM {SCHEMA}.rollup_minute r, jsonb_each_text(r.sketch) e
              WHERE r.device_id = h.d AND r.metric_name = h.m AND r.bucket >= h.hb
                AND r.bucket < h.hb + interval '1 hour'
              GROUP BY e.key) x
    ) k
    WHERE a.count IS NOT NULL;
END;
$$;

-- Write the session's chunk_stage; with rollups, merge agg_stage additively into the minutes and hours of
-- series-hours that meet no stored point, and recompute from the chunks the batch's minutes of those that do
-- (an overwrite, a redelivery, or a late point inside a stored chunk's span). Returns the overlapping chunks.
-- aggs_in_sql: agg_stage is filled here from the staged arrays instead of by the worker before COPY.
CREATE FUNCTION {SCHEMA}.write_chunks(with_rollups boolean, aggs_in_sql boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    devs text[];
    mets text[];
    mins timestamptz[];
    overlapping integer := 0;
BEGIN
    IF with_rollups THEN
        -- Before the insert: the batch must not see itself. Bounded by the key: chunks of the series that
        -- start in the new chunk's hour at or before its last instant, and end at or after its first.
        INSERT INTO chunk_overlap
        SELECT s.device_id, s.metric_name, s.hour FROM chunk_stage s
        WHERE EXISTS (SELECT 1 FROM {SCHEMA}.points_chunk c
                      WHERE c.device_id = s.device_id AND c.metric_name = s.metric_name
                        AND c.t_min >= s.hour AND c.t_min <= s.t_max AND c.t_max >= s.t_min);
        GET DIAGNOSTICS overlapping = ROW_COUNT;
    END IF;

    IF with_rollups AND aggs_in_sql THEN
        INSERT INTO agg_stage
        SELECT x.d, x.m, x.kind, x.b, x.h, sum(x.n), sum(x.total), min(x.lo), max(x.hi), jsonb_object_agg(x.key, x.n)
        FROM (
            SELECT s.device_id AS d, s.metric_name AS m, g.kind, g.b, s.hour AS h, telemetry.dd_key(u.v) AS key,
                   count(*) AS n, sum(u.v) AS total, min(u.v) AS lo, max(u.v) AS hi
            FROM chunk_stage s, unnest(s.ts, s.vals) AS u(t, v),
                 LATERAL (VALUES ('m', date_bin('1 minute', u.t, timestamptz 'epoch')), ('h', s.hour)) AS g(kind, b)
            GROUP BY 1, 2, 3, 4, 5, 6
        ) x
        GROUP BY x.d, x.m, x.kind, x.b, x.h;
    END IF;

    INSERT INTO {SCHEMA}.points_chunk (device_id, metric_name, t_min, t_max, src_seq, n, ts, seqs, vals)
    SELECT device_id, metric_name, t_min, t_max, src_seq, n, ts, seqs, vals FROM chunk_stage
    ORDER BY device_id, metric_name, t_min
    ON CONFLICT DO NOTHING;

    IF NOT with_rollups THEN
        RETURN 0;
    END IF;

    INSERT INTO {SCHEMA}.rollup_minute AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT a.device_id, a.metric_name, a.bucket, a.count, a.sum, a.min, a.max, a.sketch FROM agg_stage a
    WHERE a.kind = 'm' AND NOT EXISTS (SELECT 1 FROM chunk_overlap o WHERE o.device_id = a.device_id
                                       AND o.metric_name = a.metric_name AND o.hour = a.hour)
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch);

    INSERT INTO {SCHEMA}.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT a.device_id, a.metric_name, a.bucket, a.count, a.sum, a.min, a.max, a.sketch FROM agg_stage a
    WHERE a.kind = 'h' AND NOT EXISTS (SELECT 1 FROM chunk_overlap o WHERE o.device_id = a.device_id
                                       AND o.metric_name = a.metric_name AND o.hour = a.hour)
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch);

    IF overlapping > 0 THEN
        SELECT array_agg(a.device_id), array_agg(a.metric_name), array_agg(a.bucket) INTO devs, mets, mins
        FROM agg_stage a JOIN chunk_overlap o
          ON o.device_id = a.device_id AND o.metric_name = a.metric_name AND o.hour = a.hour
        WHERE a.kind = 'm';
        PERFORM {SCHEMA}.refresh_minutes(devs, mets, mins);
    END IF;
    RETURN overlapping;
END;
$$;
"""

ENSURE_PARTITION = (
    "CREATE TABLE IF NOT EXISTS {schema}.{part} PARTITION OF {schema}.points_chunk FOR VALUES FROM ({lo}) TO ({hi})"
)


def _resolved(where: str) -> str:
    """Later-wins points of one series from the chunks that may hold [start, end)."""
    return (
        "SELECT DISTINCT ON (u.t) u.t, u.v "
        f"FROM {SCHEMA}.points_chunk c, "
        "unnest(c.ts, c.vals, coalesce(c.seqs, array_fill(c.src_seq, ARRAY[c.n]))) AS u(t, v, s) "
        "WHERE c.device_id = %(device)s AND c.metric_name = %(metric)s "
        "AND c.t_min >= %(start)s - interval '1 hour' AND c.t_min < %(end)s AND c.t_max >= %(start)s "
        f"AND u.t >= %(start)s AND u.t < %(end)s{where} ORDER BY u.t, u.s DESC"
    )


# The read statements, row table against chunks (same parameters: device, metric, start, end).
ROW_READS = {
    "latest value of one series": (
        "SELECT time, value_num FROM telemetry.points WHERE device_id = %(device)s AND metric_name = %(metric)s "
        "ORDER BY time DESC LIMIT 1"
    ),
    "one series raw over 1 d": (
        "SELECT time, value_num FROM telemetry.points WHERE device_id = %(device)s AND metric_name = %(metric)s "
        "AND time >= %(start)s AND time < %(end)s ORDER BY time"
    ),
    "one series avg in 1 h buckets over 7 d (rollup_hour)": (
        "SELECT date_bin('1 hour', bucket, %(week)s) AS b, sum(sum) / nullif(sum(count), 0), sum(count)::bigint "
        "FROM telemetry.rollup_hour WHERE device_id = %(device)s AND metric_name = %(metric)s "
        "AND bucket >= %(week)s AND bucket < %(end)s GROUP BY 1 ORDER BY 1"
    ),
    "raw count/avg/min/max of one series over 1 d": (
        "SELECT count(*), avg(value_num), min(value_num), max(value_num) FROM telemetry.points "
        "WHERE device_id = %(device)s AND metric_name = %(metric)s AND time >= %(start)s AND time < %(end)s"
    ),
    "raw count/avg/min/max of one series over 7 d": (
        "SELECT count(*), avg(value_num), min(value_num), max(value_num) FROM telemetry.points "
        "WHERE device_id = %(device)s AND metric_name = %(metric)s AND time >= %(week)s AND time < %(end)s"
    ),
}
CHUNK_READS = {
    # The newest instant lies in a chunk starting in the hour of the chunk that starts last (none crosses an hour).
    "latest value of one series": (
        f"WITH top AS (SELECT date_bin('1 hour', t_min, timestamptz 'epoch') AS h FROM {SCHEMA}.points_chunk "
        "WHERE device_id = %(device)s AND metric_name = %(metric)s ORDER BY t_min DESC LIMIT 1) "
        f"SELECT u.t, u.v FROM top, {SCHEMA}.points_chunk c, "
        "unnest(c.ts, c.vals, coalesce(c.seqs, array_fill(c.src_seq, ARRAY[c.n]))) AS u(t, v, s) "
        "WHERE c.device_id = %(device)s AND c.metric_name = %(metric)s AND c.t_min >= top.h "
        "ORDER BY u.t DESC, u.s DESC LIMIT 1"
    ),
    "one series raw over 1 d": _resolved(""),
    "one series avg in 1 h buckets over 7 d (rollup_hour)": ROW_READS[
        "one series avg in 1 h buckets over 7 d (rollup_hour)"
    ].replace("telemetry.rollup_hour", f"{SCHEMA}.rollup_hour"),
    "raw count/avg/min/max of one series over 1 d": (
        f"SELECT count(*), avg(v), min(v), max(v) FROM ({_resolved('')}) x"
    ),
    "raw count/avg/min/max of one series over 7 d": (
        f"SELECT count(*), avg(v), min(v), max(v) FROM ({_resolved('')}) x"
    ).replace("%(start)s", "%(week)s"),
}
# Without later-wins resolution: valid for a range whose chunks do not overlap (compacted, or flagged so).
CHUNK_FAST_READS = {
    "raw count/avg/min/max of one series over 7 d": (
        f"SELECT count(*), avg(u.v), min(u.v), max(u.v) FROM {SCHEMA}.points_chunk c, unnest(c.ts, c.vals) AS u(t, v) "
        "WHERE c.device_id = %(device)s AND c.metric_name = %(metric)s "
        "AND c.t_min >= %(week)s - interval '1 hour' AND c.t_min < %(end)s AND c.t_max >= %(week)s "
        "AND u.t >= %(week)s AND u.t < %(end)s"
    ),
}
