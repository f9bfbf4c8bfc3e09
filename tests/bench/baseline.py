"""Baseline: what one process can write with the ingest worker's own write path, no HTTP and no NATS.

Rows are built first (RowSet/point_row, untimed); the timed part is write_points_only (COPY into the temp
stage + INSERT … ON CONFLICT DO UPDATE) in transactions of ``batch_size`` points on one connection.
"""

import time
from dataclasses import dataclass
from datetime import date

import msgspec
import psycopg

from ingest_worker.rows import Row, RowSet
from ingest_worker.writer import PartitionCache, write_points_only
from telemetry_schemas.values import Point
from tests.bench.data import PointMaker, hour_ago

_points_decoder = msgspec.json.Decoder(list[Point])


@dataclass(frozen=True)
class BaselineResult:
    points: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.points / self.seconds


def _batches(total: int, batch_size: int, devices: int) -> list[RowSet]:
    """One RowSet per transaction; batch b belongs to device b % devices."""
    per_device = -(-total // devices)
    start = hour_ago()
    makers = [PointMaker(start, per_device, seed=1000 + d) for d in range(devices)]
    out = []
    for b in range(-(-total // batch_size)):
        d = b % devices
        n = min(batch_size, total - b * batch_size)
        device_id = f"bench-base-{d:03d}"
        rows = RowSet()
        for point in _points_decoder.decode(msgspec.json.encode(makers[d].points(n))):
            rows.add(device_id, point, b + 1)  # one stream sequence per transaction, as the worker does
        out.append(rows)
    return out


def prepare_baseline(total: int, batch_size: int, devices: int) -> list[tuple[list[Row], set[date]]]:
    """The rows and days of every transaction, built before the clock starts."""
    return [(rows.rows(), rows.days()) for rows in _batches(total, batch_size, devices)]


async def run_baseline(database_url: str, batches: list[tuple[list[Row], set[date]]]) -> BaselineResult:
    partitions = PartitionCache()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # Create the hour's partitions first, as a warmed-up worker would have them.
        await partitions.ensure(conn, set().union(*(days for _, days in batches)))
        start = time.perf_counter()
        written = 0
        for rows, days in batches:
            await partitions.ensure(conn, days)
            await write_points_only(conn, rows)
            written += len(rows)
        seconds = time.perf_counter() - start
    return BaselineResult(written, seconds)
