"""tests/bench/peers_cpu.py: the ingestion window, the µs per point, and processes that come and go counted."""

import os
import subprocess
import sys

from tests.bench.peers_cpu import CpuSampler, Sample, cpu_line, ingest_window

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_the_window_ends_half_a_second_after_the_stamp_and_spans_the_visible_time() -> None:
    start, end = ingest_window({"ts": "2026-12-05T00:08:51Z", "visible_s": 9.5})
    assert end == 1796429331.5  # 2026-12-05T00:08:51Z + 0.5 s
    assert end - start == 9.5


def test_per_point_is_the_difference_between_the_samples_nearest_the_window_edges() -> None:
    sampler = CpuSampler({})
    sampler.samples = [
        Sample(100.0, {"gateways": 1.0, "PostgreSQL": 2.0}, 10.0),
        Sample(105.0, {"gateways": 2.0, "PostgreSQL": 3.0}, 15.0),
        Sample(110.2, {"gateways": 3.0, "PostgreSQL": 6.0}, 20.0),
        Sample(120.0, {"gateways": 9.0, "PostgreSQL": 9.0}, 40.0),  # after the window: the queries
    ]
    got = sampler.per_point(100.1, 110.0, 1_000_000)
    assert got == {"gateways": 2.0, "PostgreSQL": 4.0, "machine": 10.0, "other": 4.0}
    assert cpu_line(got) == "PostgreSQL 4.00, gateways 2.00; ours 6.00, client and others 4.00, machine 10.00"


def test_a_tree_counts_children_that_ran_and_exited_between_samples() -> None:
    """A PostgreSQL backend opened during the load and gone before its end still counts (the reaped children)."""
    with CpuSampler({"postgres": (os.getpid(), True)}, interval_s=60) as sampler:
        subprocess.run([sys.executable, "-c", BURN], check=True)
    first, last = sampler.samples[0], sampler.samples[-1]
    assert last.cpu["PostgreSQL"] - first.cpu["PostgreSQL"] >= 0.25
