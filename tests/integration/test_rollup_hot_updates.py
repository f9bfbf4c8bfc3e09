"""Additive rollup updates can stay HOT: no index on a rollup table holds a column those updates change.

Every ingest transaction adds to rollup_minute / rollup_hour rows in place (migration 0013, fillfactor 70 for
it). PostgreSQL makes an update HOT (no new index entries) only when no indexed column changes — INCLUDE
columns count — so an index holding count, sum, min, max or the sketch makes every one of those updates write
new entries in every index of the table (0014's covering index did: 0 of 58,000 rollup_hour updates HOT).
"""

import psycopg

from tests.support.servers import Servers

# The columns an additive merge rewrites; the key columns (device_id, metric_name, bucket) never change.
CHANGING = {"count", "sum", "min", "max", "sketch", "first_time", "last_time", "updated_at"}

INDEXED_COLUMNS = """
SELECT i.indexrelid::regclass::text, a.attname
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = ANY(ARRAY['telemetry.rollup_minute'::regclass, 'telemetry.rollup_hour'::regclass])
"""


def test_no_rollup_index_holds_a_column_the_additive_merge_changes(servers: Servers) -> None:
    with psycopg.connect(servers.database_url) as conn:
        indexed = conn.execute(INDEXED_COLUMNS).fetchall()
        columns = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'telemetry.rollup_hour'::regclass AND attnum > 0"
        )}  # fmt: skip
    assert indexed, "no index found: the query above lost its way"
    assert {"count", "sum", "min", "max"} <= columns  # the names this test watches exist
    offending = sorted((index, column) for index, column in indexed if column in CHANGING)
    assert offending == []
