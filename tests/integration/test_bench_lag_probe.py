"""The lag benchmark's poller probe stays an index probe per device whatever the table statistics say.

Regression: the probe was `WHERE EXISTS (SELECT 1 FROM points WHERE device_id = d)`, which PostgreSQL
turned into a seq scan of every point + HashAggregate once the table was large and not analyzed (right
after the benchmark's sustained phase), 150-450 ms per poll: the lag phase then measured the poller,
not the pipeline (docs/benchmarks.md, "Before / after the redesign").
"""

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from telemetry_core.embedded import start_postgres
from telemetry_core.migrate import migrate
from tests.bench.lag import _SEEN_POINTS

pytestmark = pytest.mark.slow

# The shape that made the old probe scan everything: many points over few devices, never analyzed.
POINTS, DEVICES = 1_000_000, 50
# The probe as it was before the fix: the test must fail with it (see test_old_probe_scans_the_table).
OLD_PROBE = (
    "SELECT d FROM unnest(%s::text[]) AS d WHERE EXISTS (SELECT 1 FROM telemetry.points p WHERE p.device_id = d)"
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[psycopg.Connection]:
    """A private PostgreSQL (its statistics must not depend on other tests) with a big unanalyzed partition."""
    server = start_postgres(Path(tmp_path_factory.mktemp("lag-probe")), durable=False)
    try:
        migrate(server.url)
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("SELECT telemetry.ensure_partition(current_date)")
            conn.execute(
                "ALTER TABLE telemetry.points_p" + _today(conn) + " SET (autovacuum_enabled = false)"
            )  # no ANALYZE behind our back: the state right after a load is what we test
            conn.execute(
                """INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, src_seq)
                   SELECT 'dev-' || (g %% %s), 'm' || (g %% 5), date_trunc('day', now()) + g * interval '1 ms', 1, g, g
                   FROM generate_series(1, %s) g""",
                (DEVICES, POINTS),
            )
            yield conn
    finally:
        server.stop()


def _today(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT to_char(current_date, 'YYYYMMDD')").fetchone()
    assert row is not None
    return str(row[0])


def _plan(conn: psycopg.Connection, sql: str, devices: list[str]) -> str:
    return "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + sql, (devices,)).fetchall())


PENDING = [f"missing-{i}" for i in range(50)] + ["dev-7", "dev-0"]


def test_old_probe_scans_the_table(loaded: psycopg.Connection) -> None:
    """The data set reproduces the regression: the probe as it was plans a scan of every point (runs first:
    before any ANALYZE)."""
    assert "Seq Scan on points_p" in _plan(loaded, OLD_PROBE, PENDING)


@pytest.mark.parametrize("analyzed", [False, True])
def test_probe_is_an_index_probe_per_device(loaded: psycopg.Connection, analyzed: bool) -> None:
    if analyzed:
        loaded.execute("ANALYZE telemetry.points")
    plan = _plan(loaded, _SEEN_POINTS, PENDING)
    assert "Seq Scan" not in plan, plan
    assert "Index Only Scan using points_p" in plan, plan
    # And it answers the question: exactly the devices that have rows.
    found = sorted(r[0] for r in loaded.execute(_SEEN_POINTS, (PENDING,)).fetchall())
    assert found == ["dev-0", "dev-7"]
