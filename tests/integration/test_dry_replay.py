"""The fault test's replay comparison (tests/support/dry_replay.py) sees a bad live row and leaves the model be.

A private nats-server and database (the comparison reads a whole stream and a projection's checkpoint, which
the session's shared ones have plenty of): notices of two devices are published to NOTICES and applied live
the way the projection worker does; then a live row is corrupted, and the rebuild must name it, leave it as it
was (nothing swapped, no shadow left), and refuse to compare while the live model is behind the stream.
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import nats
import psycopg
import pytest

from ingest_worker.notices import build_notice
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from projection_worker.projections import latest_values, rollups
from telemetry_core.checkpoints import advance_checkpoint
from telemetry_core.embedded import start_nats
from telemetry_core.settings import Settings
from telemetry_core.topology import NOTICES_STREAM, ensure_topology, stored_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.values import Point
from tests.support.dry_replay import replay_differences
from tests.support.own_database import own_database
from tests.support.read_models import LATEST, METRIC_HOURS
from tests.support.servers import Servers

T0 = datetime(2031, 10, 2, 6, 59, tzinfo=UTC)
HOUR = T0.replace(minute=0)
DEVICES = ["dev_a", "dev_b"]


@pytest.fixture(scope="module")
def private(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    server = start_nats(tmp_path_factory.mktemp("dry-replay") / "nats")
    try:
        with own_database(servers.database_url, "dry_replay") as database_url:
            yield server.url, database_url
    finally:
        server.stop()


async def ingest_and_project(nats_url: str, database_url: str, device: str, seq: int, *, live: bool = True) -> None:
    """Store two points of ``device`` (POINTS sequence ``seq``), publish the notice, apply it live unless not."""
    points = [Point(timestamp=T0 + timedelta(seconds=30 * k), metric_name="m", value=float(seq + k)) for k in (0, 3)]
    rows = RowSet()
    for p in points:
        rows.add(device, p, seq)
    notice = build_notice(device, seq, points, rollups_applied=True)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, Settings())
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            async with conn.transaction():
                await PartitionCache().ensure(conn, rows.days())
                await write_rows(conn, rows.rows())
            ack = await js.publish(stored_subject(device), json_encoder.encode(notice))
            if live:
                async with conn.transaction(), conn.cursor() as cur:
                    for projection in (latest_values, rollups):
                        await projection.apply(cur, [[notice]])  # one NOTICES message: this notice
                        await advance_checkpoint(conn, projection.NAME, NOTICES_STREAM, ack.seq)
    finally:
        await nc.close()


async def test_a_corrupted_live_row_is_named_and_left_alone(private: tuple[str, str]) -> None:
    nats_url, database_url = private
    for seq, device in enumerate(DEVICES + DEVICES, start=1):  # each device twice: latest is the second
        await ingest_and_project(nats_url, database_url, device, seq)
    for projection, query, params in ((latest_values, LATEST, (DEVICES,)), (rollups, METRIC_HOURS, ())):
        assert await replay_differences(nats_url, database_url, projection, query, 2, params) == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE telemetry.latest_values SET value_num = -1 WHERE device_id = 'dev_b'")
        conn.execute("UPDATE telemetry.rollup_metric_hour SET count = count + 1 WHERE bucket = %s", (HOUR,))
    (latest,) = await replay_differences(nats_url, database_url, latest_values, LATEST, 2, (DEVICES,))
    got, want = latest.split(", want ")
    assert got.startswith("latest_values (live vs replayed) dev_b/m: got (") and ", 0, -1.0, " in got, latest
    assert ", 0, 7.0, " in want  # dev_b's second message: 4 + 3 at T0 + 90 s
    (hour,) = await replay_differences(nats_url, database_url, rollups, METRIC_HOURS, 2)
    # The 06:00 hour holds each device's point at 06:59 (its second message overwrote the first's: 3.0 and 4.0);
    # the corrupted row counts one more.
    assert (
        hour
        == f"rollups (live vs replayed) m/{HOUR.isoformat()}: got (3, 7.0, 3.0, 4.0, 2), want (2, 7.0, 3.0, 4.0, 2)"
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT value_num FROM telemetry.latest_values WHERE device_id = 'dev_b'").fetchone() \
            == (-1.0,)  # fmt: skip
        shadows = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'telemetry_replay'").fetchone()
        assert shadows == (0,)


async def test_no_comparison_while_the_live_model_is_behind_its_stream(private: tuple[str, str]) -> None:
    nats_url, database_url = private
    await ingest_and_project(nats_url, database_url, "dev_c", 11)
    await ingest_and_project(nats_url, database_url, "dev_c", 12, live=False)  # published, not applied yet
    with pytest.raises(AssertionError, match="latest_values: the live model is at ") as behind:
        await replay_differences(nats_url, database_url, latest_values, LATEST, 2, (["dev_c"],))
    live, rebuilt = (int(n) for n in re.findall(r"\d+", str(behind.value).split("\n")[0]))
    assert rebuilt == live + 1  # the one notice not applied live (the stream may hold the other test's too)
