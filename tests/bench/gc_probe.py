"""The ingest worker's Python per point under four settings of the garbage collector, in one process.

`python -m tests.bench.gc_probe` (part of `make bench`; no servers). A fetched batch as the ingest worker holds it:
64 signed one-device messages of 1000 points in the peers harness's shape (10 metrics x 100 s, a unit and three
tags on every point), each decoded, added to one RowSet, the rows formatted for COPY BINARY, and a stored notice
built per message (what ingest_worker/handler.py does per point, without the I/O). Rounds alternate between
Python's default thresholds (700, 10, 10) with and without the start-up objects frozen, tune_gc's
(TELEMETRY_GC_THRESHOLD, shared/telemetry_core/gc_tuning.py) and the collector off; medians over rounds. Prints the table; ``--write`` puts it in docs/benchmarks-gc.md.
"""

import gc
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from psycopg import postgres
from psycopg._copy_base import BinaryFormatter
from psycopg.adapt import Transformer

from ingest_worker.notices import build_notice
from ingest_worker.rows import COPY_TYPES, RowSet
from telemetry_core.gc_tuning import DEFAULT_THRESHOLD, FULL_EVERY, MIDDLE_EVERY
from telemetry_core.points_validator import points_body, signed_points_decoder
from tests.bench.data import PointMaker, point_body

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-gc.md"
MESSAGES, POINTS, ROUNDS, BATCHES = 64, 1000, 5, 5
# name -> (thresholds or None for the collector off, whether start-up objects are frozen first)
SETTINGS: dict[str, tuple[tuple[int, int, int] | None, bool]] = {
    "Python's default (700, 10, 10), nothing frozen: the processes before tune_gc": ((700, 10, 10), False),
    "Python's default, start-up objects frozen": ((700, 10, 10), True),
    f"tune_gc: ({DEFAULT_THRESHOLD}, {MIDDLE_EVERY}, {FULL_EVERY}), frozen: the processes now": (
        (DEFAULT_THRESHOLD, MIDDLE_EVERY, FULL_EVERY), True),
    "collector off": (None, True),
}  # fmt: skip


def bodies() -> list[tuple[str, bytes]]:
    """(device, POINTS body) of one fetched batch: the benchmarks' points (tests/bench/data.py) with a unit and
    three tags each, as the peers harness sends them."""
    start = datetime(2026, 12, 4, 10, tzinfo=UTC)
    out = []
    for d in range(MESSAGES):
        tags = {"location": f"room_{d % 100}", "floor": f"f{d % 10}", "model": ("mk1", "mk2", "mk3")[d % 3]}
        points = PointMaker(start, POINTS, seed=d).points(POINTS)
        raws = [point_body({**p, "unit": "C", "tags": tags}) for p in points]
        device = f"dev_{d:05d}"
        out.append((device, points_body(device, raws, None, f"req-{d}")))
    return out


def one_batch(batch: list[tuple[str, bytes]], oids: list[int]) -> None:
    rows, decoded = RowSet(), []
    for seq, (_device, body) in enumerate(batch, start=1):
        doc = signed_points_decoder.decode(body)
        rows.add_points(doc.device_id, doc.points, seq)
        decoded.append((doc.device_id, seq, doc.points))
    tx = Transformer()
    tx.set_dumper_types(oids, 1)
    formatter = BinaryFormatter(tx)
    for row in rows.rows():
        formatter.write_row(row)
    formatter.end()
    for device, seq, points in decoded:
        build_notice(device, seq, points, {}, None, rollups_applied=True)


def measure(
    batch: list[tuple[str, bytes]], oids: list[int], thresholds: tuple[int, int, int] | None, frozen: bool
) -> dict:
    gc.enable()
    gc.unfreeze()
    gc.collect()
    if frozen:
        gc.freeze()
    if thresholds is None:
        gc.disable()
    else:
        gc.set_threshold(*thresholds)
    gc.collect()
    before = [s["collections"] for s in gc.get_stats()]
    cpu = time.process_time()
    for _ in range(BATCHES):
        one_batch(batch, oids)
    spent = time.process_time() - cpu
    runs = [s["collections"] - b for s, b in zip(gc.get_stats(), before, strict=True)]
    gc.enable()
    return {"us_per_point": spent / (BATCHES * MESSAGES * POINTS) * 1e6, "collections": [r / BATCHES for r in runs]}


def main() -> None:
    batch = bodies()
    oids = [postgres.types.get(t).oid for t in COPY_TYPES]  # type: ignore[union-attr]
    found: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    one_batch(batch, oids)  # warm-up
    for r in range(ROUNDS):
        for name in list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]:
            found[name].append(measure(batch, oids, *SETTINGS[name]))
    default = statistics.median(m["us_per_point"] for m in found[next(iter(SETTINGS))])
    lines = [
        "| collector | CPU µs per point | vs Python's default | collections per batch (young / middle / full) |",
        "|---|---|---|---|",
    ]
    for name, runs in found.items():
        us = statistics.median(m["us_per_point"] for m in runs)
        counts = " / ".join(f"{statistics.median(m['collections'][g] for m in runs):,.0f}" for g in range(3))
        lines.append(f"| {name} | {us:.2f} | {us / default:.2f}x | {counts} |")
    table = "\n".join(lines)
    print(table)
    if "--write" in sys.argv:
        DOC.write_text(
            "# The garbage collector and the ingest worker's Python per point\n\n"
            f"Written by `python -m tests.bench.gc_probe --write` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (no "
            f"servers, one process). A fetched batch as the ingest worker holds it: {MESSAGES} signed one-device "
            f"messages of {POINTS} points in the peers harness's shape (a unit and three tags on every point), "
            "decoded, added to one RowSet, formatted for COPY BINARY, and a stored notice built per message: the "
            "worker's Python per point without its I/O. Settings alternate over "
            f"{ROUNDS} rounds of {BATCHES} batches; medians; CPU of this process. The tune_gc row is what every "
            "process of the service runs with by default (`TELEMETRY_GC_THRESHOLD`, "
            "shared/telemetry_core/gc_tuning.py).\n\n" + table + "\n"
        )
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
