"""What the ingest transaction costs PostgreSQL when the same series keep writing (issue 13 item 3).

``python -m tests.bench.steady_rollups`` (``make bench-steady``; writes docs/benchmarks-steady-rollups.md). The peers
harness sends each series once: every rollup row its transactions touch is new. A fleet writes the same series all
hour long, so nearly every transaction *updates* its series' minute and hour rows, merging each batch's sketch into
a stored one that grows through the hour. This measures that case, step by step.

Each scenario (``SCENARIOS``; ``BENCH_STEADY_SCENARIOS=batches,single`` picks) runs twice, each time on a fresh
durable embedded PostgreSQL and one connection: with migration 0022's hour statement (every batch's sketch merged
into the stored one) and with 0023's (pending, folded in by the compaction on a second connection). Each round is
one transaction of ``devices`` x 10 metrics x ``seconds`` seconds of points (one per second, tagged), the clock
advancing from the top of an hour; the steps of ``telemetry.write_points_stage``'s fast path run one by one (the
statements of migrations 0018 / 0022 / 0023: keep them in step), backend CPU per point read around each.
"""

import asyncio
import os
import random
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg

from ingest_worker.rows import COLUMNS, COPY_TYPES, RowSet
from ingest_worker.sketch_compaction import MIN_PENDING
from ingest_worker.writer import PartitionCache, prepare_stage
from telemetry_core.embedded import start_postgres
from telemetry_core.migrate import migrate
from telemetry_schemas.values import Point

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-steady-rollups.md"


@dataclass(frozen=True)
class Scenario:
    """One load: each round one transaction of ``devices`` x 10 metrics x ``seconds`` s of points (one per second).

    ``fill_seconds`` per round before ``warm_rounds`` (the hour sketches grow sooner); the compaction every
    ``compact_every`` rounds (the default interval, 30 s, in the series' time).
    """

    name: str
    devices: int
    seconds: int
    fill_seconds: int
    rounds: int
    warm_rounds: int
    compact_every: int


SCENARIOS = {
    "batches": Scenario("10 points per series per transaction", 256, 10, 10, 60, 30, 3),
    # A fleet's devices each sending every second: one point per series per transaction, late in the hour.
    "single": Scenario("one point per series per transaction, late in the hour", 512, 1, 60, 150, 30, 30),
}
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


# Migration 0023's hour statement: count / sum / min / max merged; a batch's sketch into a fresh row, else pending.
_HOUR = """WITH hours AS MATERIALIZED (
        SELECT x.d, x.m, x.b, sum(x.n) AS n, coalesce(sum(x.total), 0) AS total, coalesce(min(x.lo), 'Infinity') AS lo,
               coalesce(max(x.hi), '-Infinity') AS hi,
               ('{' || string_agg('"' || x.key || '":' || x.n, ',') FILTER (WHERE x.key IS NOT NULL) || '}')::jsonb AS sketch
        FROM (SELECT w.device_id AS d, w.metric_name AS m, date_bin('1 hour', w.time, timestamptz 'epoch') AS b, w.key,
                     count(*) AS n, sum(w.value_num) AS total, min(w.value_num) AS lo, max(w.value_num) AS hi
              FROM points_written w WHERE w.value_type IN (0, 1) GROUP BY 1, 2, 3, 4) x
        GROUP BY x.d, x.m, x.b
    ), merged AS (
        INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
        SELECT h.d, h.m, h.b, h.n, h.total, h.lo, h.hi, coalesce(h.sketch, '{}') FROM hours h ORDER BY h.d, h.m, h.b
        ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
            count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
            max = greatest(r.max, EXCLUDED.max)
        RETURNING r.device_id, r.metric_name, r.bucket, r.xmax <> 0 AS existed
    )
    INSERT INTO telemetry.rollup_hour_pending (device_id, metric_name, bucket, sketch)
    SELECT h.d, h.m, h.b, h.sketch FROM hours h JOIN merged u ON u.device_id = h.d AND u.metric_name = h.m AND u.bucket = h.b
    WHERE u.existed AND h.sketch IS NOT NULL"""
# What the ingest workers' compaction runs (ingest_worker/sketch_compaction.py), every Scenario.compact_every rounds.
# The series' hours are live ones (none over: -infinity), folded at ingest_worker/sketch_compaction.py's MIN_PENDING.
_COMPACT = f"SELECT telemetry.compact_hour_sketches(500, {MIN_PENDING}, '-infinity')"
COMPACTION = "hour sketch compaction (amortized)"

STEPS = {
    "COPY into the stage": None,
    "insert into points": _INSERT,
    "points_written": _WRITTEN,
    "rollup_minute merge": _merge("rollup_minute", "1 minute"),
    "rollup_hour merge": _HOUR,
}
# Migration 0022's hour statement (every batch's sketch merged into the stored one): the run to compare with.
_HOUR_MERGING_EVERY_BATCH = _merge("rollup_hour", "1 hour")


def _batch(devices: int, start: datetime, second: int, seconds: int, seq: int, rng: random.Random) -> RowSet:
    rows = RowSet()
    for d in range(devices):
        points = [
            Point(timestamp=start + timedelta(seconds=second + k), metric_name=f"m{m}",
                  value=round(rng.uniform(0, 100), 2), unit="u", tags={"site": f"s{d % 7}"})
            for m in range(METRICS) for k in range(seconds)
        ]  # fmt: skip
        rows.add_points(f"dev{d:04d}", points, seq + d)
    return rows


async def _run(
    url: str, sc: Scenario, merging_every_batch: bool
) -> tuple[dict[str, list[float]], list[tuple[int, float]]]:
    """Backend CPU per point of each step, per measured round; the hour rows' own sketch keys, on average."""
    per_step: dict[str, list[float]] = {}
    steps = STEPS | ({"rollup_hour merge": _HOUR_MERGING_EVERY_BATCH} if merging_every_batch else {})
    sketches: list[tuple[int, float]] = []
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rng = random.Random(7)
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as compacting,  # as a worker's pool would
    ):
        await prepare_stage(conn)
        backends = []
        for c in (conn, compacting):
            row = await (await c.execute("SELECT pg_backend_pid()")).fetchone()
            backends.append(psutil.Process(row[0] if row else 0))

        def cpu(backend: psutil.Process = backends[0]) -> float:
            times = backend.cpu_times()
            return times.user + times.system

        partitions = PartitionCache()
        for round_ in range(sc.rounds):
            seconds = sc.seconds if round_ >= sc.warm_rounds else sc.fill_seconds
            second = min(round_, sc.warm_rounds) * sc.fill_seconds + max(round_ - sc.warm_rounds, 0) * sc.seconds
            rows = _batch(sc.devices, start, second, seconds, round_ * sc.devices + 1, rng)
            await partitions.ensure(conn, rows.days())
            n, measured = len(rows), round_ >= sc.warm_rounds
            async with conn.transaction(), conn.cursor() as cur:
                for name, statement in steps.items():
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
            if not merging_every_batch and (round_ + 1) % sc.compact_every == 0:  # its own transactions, as a worker's
                before = cpu(backends[1])
                while (await (await compacting.execute(_COMPACT)).fetchone() or (0,))[0] == 500:
                    pass
                if measured:
                    spent = (cpu(backends[1]) - before) / (n * sc.compact_every) * 1e6
                    per_step.setdefault(COMPACTION, []).append(spent)
            if measured:
                keys = await (
                    await conn.execute(
                        "SELECT avg((SELECT count(*) FROM jsonb_object_keys(sketch))) FROM telemetry.rollup_hour"
                    )
                ).fetchone()
                sketches.append((round_, float(keys[0]) if keys and keys[0] is not None else 0.0))
    return per_step, sketches


def _measure(sc: Scenario, merging_every_batch: bool) -> tuple[dict[str, float], list[tuple[int, float]]]:
    """One run on a fresh durable PostgreSQL: the mean per step."""
    root = Path(tempfile.mkdtemp(prefix="telemetry-steady-"))
    server = start_postgres(root / "pg", durable=True)
    try:
        migrate(server.url)
        per_step, sketches = asyncio.run(_run(server.url, sc, merging_every_batch))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)  # gigabytes of WAL and tables
    # Means: a round's CPU is read in clock ticks (coarse against a round's points), and the hours fill up in step, so
    # most rounds' compaction folds little and some a lot.
    return {name: statistics.mean(values) for name, values in per_step.items()}, sketches


def _section(sc: Scenario) -> list[str]:
    before, _ = _measure(sc, merging_every_batch=True)
    after, sketches = _measure(sc, merging_every_batch=False)
    total_before, total_after = sum(before.values()), sum(after.values())
    points = sc.devices * METRICS * sc.seconds
    fill = f" ({sc.fill_seconds} s per round before the measured ones)" if sc.fill_seconds != sc.seconds else ""
    lines = [
        f"## {sc.name[0].upper()}{sc.name[1:]}",
        "",
        f"Each round one transaction of {sc.devices} devices x {METRICS} metrics x {sc.seconds} s = {points:,} points, "
        f"the clock advancing {sc.seconds} s per round{fill}; rounds {sc.warm_rounds + 1}-{sc.rounds} measured (the "
        f"hour rows' own sketches have grown to {sketches[0][1]:.0f}-{sketches[-1][1]:.0f} keys). The compaction runs "
        f"every {sc.compact_every} rounds ({sc.compact_every * sc.seconds} s of the series' time, as the default "
        "interval).",
        "",
        "| step | 0022: µs of PostgreSQL CPU per point | 0023: µs per point | share (0023) |",
        "|---|---|---|---|",
    ]
    for name in after:
        was = f"{before[name]:.2f}" if name in before else "-"
        lines.append(f"| {name} | {was} | {after[name]:.2f} | {after[name] / total_after:.0%} |")
    lines += [
        f"| total | {total_before:.2f} | {total_after:.2f} | 100% |",
        "",
        f"The whole ingest transaction with the compaction: **{total_after / total_before:.2f}x** the CPU per point of "
        "0022's.",
        "",
    ]
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    """Run each scenario both ways, print the tables, write the document."""
    chosen = os.environ.get("BENCH_STEADY_SCENARIOS", ",".join(SCENARIOS)).split(",")
    lines = [
        "# The ingest transaction in steady state: the same series writing all hour",
        "",
        f"Written by `python -m tests.bench.steady_rollups` (`make bench-steady`) on {datetime.now(UTC):%Y-%m-%d %H:%M} "
        "UTC. The peers harness writes each series once, so its transactions insert rollup rows (a fresh hour row "
        "takes its sketch at once); a fleet writes the same series all hour, so nearly every transaction updates its "
        "series' minute and hour rows. One durable PostgreSQL per run, one connection, the steps of "
        "`telemetry.write_points_stage`'s fast path run one by one, backend CPU per point read around each (in clock "
        "ticks: the mean over the measured rounds). Two runs per load: the hour statement of migration 0022 (every "
        "batch's sketch merged into the stored one: `telemetry.dd_merge` decompresses, unpacks, adds, builds, "
        "compresses and writes the stored sketch again, whose cost grows with it through the hour) and of 0023 (a "
        f"batch's sketch pending, folded in by the compaction, on a connection of its own, once an hour has "
        f"{MIN_PENDING} of them, with `telemetry.dd_fold`; its CPU spread over the points of the rounds between two "
        "runs).",
        "",
    ]
    for key in chosen:
        lines += _section(SCENARIOS[key.strip()])
    DOC.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
