"""What the ingest transaction costs PostgreSQL when the same series keep writing (issue 13 item 3).

``python -m tests.bench.steady_rollups`` (``make bench-steady``; writes docs/benchmarks-steady-rollups.md). The peers
harness sends each series once: every rollup row its transactions touch is new. A fleet writes the same series all
hour long, so nearly every transaction *updates* its series' minute and hour rows, merging each batch's sketch into
a stored one that grows through the hour. This measures that case, step by step.

One durable embedded PostgreSQL, one connection. Each round is one transaction of ``DEVICES`` devices x 10 metrics
x ``SECONDS`` seconds of points (one per second, tagged), the clock advancing ``SECONDS`` per round from the top of
an hour, the steps of ``telemetry.write_points_stage``'s fast path run one by one (the statements of migrations
0018 / 0022), backend CPU per point read around each. After ``WARM_ROUNDS`` (the hour sketches have grown), each
round also runs the hour merge without merging the sketch, in a savepoint rolled back: the sketch merge's share.
"""

import asyncio
import os
import random
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg

from ingest_worker.rows import COLUMNS, COPY_TYPES, RowSet
from ingest_worker.writer import PartitionCache, prepare_stage
from telemetry_core.embedded import start_postgres
from telemetry_core.migrate import migrate
from telemetry_schemas.values import Point

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-steady-rollups.md"
DEVICES = int(os.environ.get("BENCH_STEADY_DEVICES", "256"))
SECONDS = int(os.environ.get("BENCH_STEADY_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_STEADY_ROUNDS", "60"))
WARM_ROUNDS = int(os.environ.get("BENCH_STEADY_WARM_ROUNDS", "30"))
METRICS = 10

_COPY = f"COPY points_stage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_INSERT = """INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, value_text, value_bool,
        value_json, unit, tags, metadata, src_seq, first_seq)
    SELECT s.device_id, s.metric_name, s.time, s.value_type, s.value_num, s.value_text, s.value_bool, s.value_json,
           s.unit, s.tags, s.metadata, s.src_seq, s.src_seq FROM points_stage s ORDER BY s.device_id, s.metric_name, s.time"""
_WRITTEN = """INSERT INTO points_written
    SELECT s.device_id, s.metric_name, s.time, s.value_type, s.value_num, s.src_seq, true, true,
           CASE WHEN s.value_type IN (0, 1) THEN telemetry.dd_key(s.value_num) END FROM points_stage s"""
_SKETCH_MERGE = "sketch = telemetry.dd_merge(r.sketch, EXCLUDED.sketch)"


def _merge(table: str, width: str) -> str:
    """The fast path's merge into one rollup table (migration 0022's text, fresh rows only)."""
    return f"""INSERT INTO telemetry.{table} AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT x.d, x.m, x.b, sum(x.n), coalesce(sum(x.total), 0), coalesce(min(x.lo), 'Infinity'),
           coalesce(max(x.hi), '-Infinity'),
           coalesce(('{{' || string_agg('"' || x.key || '":' || x.n, ',') FILTER (WHERE x.key IS NOT NULL) || '}}')::jsonb,
                    '{{}}')
    FROM (SELECT w.device_id AS d, w.metric_name AS m, date_bin('{width}', w.time, timestamptz 'epoch') AS b, w.key,
                 count(*) AS n, sum(w.value_num) AS total, min(w.value_num) AS lo, max(w.value_num) AS hi
          FROM points_written w WHERE w.value_type IN (0, 1) GROUP BY 1, 2, 3, 4) x
    GROUP BY x.d, x.m, x.b ORDER BY x.d, x.m, x.b
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
        count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max), {_SKETCH_MERGE}"""


STEPS = {
    "COPY into the stage": None,
    "insert into points": _INSERT,
    "points_written": _WRITTEN,
    "rollup_minute merge": _merge("rollup_minute", "1 minute"),
    "rollup_hour merge": _merge("rollup_hour", "1 hour"),
}
_HOUR_WITHOUT_SKETCH = _merge("rollup_hour", "1 hour").replace(_SKETCH_MERGE, "sketch = r.sketch")


def _batch(start: datetime, second: int, seq: int, rng: random.Random) -> RowSet:
    rows = RowSet()
    for d in range(DEVICES):
        points = [
            Point(timestamp=start + timedelta(seconds=second + k), metric_name=f"m{m}",
                  value=round(rng.uniform(0, 100), 2), unit="u", tags={"site": f"s{d % 7}"})
            for m in range(METRICS) for k in range(SECONDS)
        ]  # fmt: skip
        rows.add_points(f"dev{d:04d}", points, seq + d)
    return rows


async def _run(url: str) -> tuple[dict[str, list[float]], list[tuple[int, float]]]:
    per_step: dict[str, list[float]] = {}
    sketches: list[tuple[int, float]] = []
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rng = random.Random(7)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await prepare_stage(conn)
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        backend = psutil.Process(row[0] if row else 0)

        def cpu() -> float:
            times = backend.cpu_times()
            return times.user + times.system

        partitions = PartitionCache()
        for round_ in range(ROUNDS):
            rows = _batch(start, round_ * SECONDS, round_ * DEVICES + 1, rng)
            await partitions.ensure(conn, rows.days())
            n, measured = len(rows), round_ >= WARM_ROUNDS
            async with conn.transaction(), conn.cursor() as cur:
                for name, statement in STEPS.items():
                    if measured and name == "rollup_hour merge":  # the same merge, the stored sketch kept as it is
                        await cur.execute("SAVEPOINT without_sketch")
                        before = cpu()
                        await cur.execute(_HOUR_WITHOUT_SKETCH)
                        per_step.setdefault("rollup_hour merge, sketch not merged", []).append(
                            (cpu() - before) / n * 1e6
                        )
                        await cur.execute("ROLLBACK TO SAVEPOINT without_sketch")
                    before = cpu()
                    if statement is None:
                        async with cur.copy(_COPY) as copy:
                            copy.set_types(COPY_TYPES)
                            for r in rows.rows():
                                await copy.write_row(r)
                    else:
                        await cur.execute(statement)
                    if measured:
                        per_step.setdefault(name, []).append((cpu() - before) / n * 1e6)
            if measured:
                keys = await (
                    await conn.execute(
                        "SELECT avg((SELECT count(*) FROM jsonb_object_keys(sketch))) FROM telemetry.rollup_hour"
                    )
                ).fetchone()
                sketches.append((round_, float(keys[0]) if keys and keys[0] is not None else 0.0))
    return per_step, sketches


def main() -> None:
    """Run it, print the table, write the document."""
    root = Path(tempfile.mkdtemp(prefix="telemetry-steady-"))
    server = start_postgres(root / "pg", durable=True)
    try:
        migrate(server.url)
        per_step, sketches = asyncio.run(_run(server.url))
    finally:
        server.stop()
    medians = {name: statistics.median(values) for name, values in per_step.items()}
    total = sum(v for k, v in medians.items() if k != "rollup_hour merge, sketch not merged")
    points = DEVICES * METRICS * SECONDS
    lines = [
        "# The ingest transaction in steady state: the same series writing all hour",
        "",
        f"Written by `python -m tests.bench.steady_rollups` (`make bench-steady`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. One durable PostgreSQL, one connection; each round one transaction "
        f"of {DEVICES} devices x {METRICS} metrics x {SECONDS} s = {points:,} points (one per second, tagged), the "
        f"clock advancing {SECONDS} s per round; rounds {WARM_ROUNDS + 1}-{ROUNDS} measured (the hour sketches have "
        f"grown to {sketches[0][1]:.0f}-{sketches[-1][1]:.0f} keys). Backend CPU per point, median over the measured "
        "rounds (the resolution is one clock tick / points per round).",
        "",
        "| step | µs of PostgreSQL CPU per point | share |",
        "|---|---|---|",
    ]
    for name, value in medians.items():
        share = "-" if name == "rollup_hour merge, sketch not merged" else f"{value / total:.0%}"
        lines.append(f"| {name} | {value:.2f} | {share} |")
    lines += [
        f"| total | {total:.2f} | 100% |",
        "",
        "The harness of `make bench-peers` writes each series once, so its transactions insert rollup rows and never "
        "merge into a stored sketch; here nearly every minute and hour row exists, and the hour merge "
        "(`telemetry.dd_merge`: the stored sketch unpacked, the batch's keys added, the whole object built again, "
        "the row written again) costs what the row `sketch not merged` does not. The hour sketch grows through the "
        "hour, and so does that cost.",
        "",
    ]
    DOC.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
