"""q1 and q2 at 50 concurrent, VictoriaMetrics and this service alternating round by round on one loaded machine.

A plug-in to the peers harness, run by tests.bench.peers_interleaved with the harness's Python (like
peers_queries.py: this file imports nothing of the project). Why: `make bench-peers` runs each system's queries
minutes apart, and this machine's speed moves by up to 1.5x between minutes (issue 13's figures are ratios), so
a ratio of two such phases carries that drift. Here both systems hold the data at once and take turns: per round,
each query runs against VictoriaMetrics and against every ``--target`` in an order that alternates, with the
harness's own client loops (``bench_tsdb.query_phase`` for VictoriaMetrics, ``target.HttpTarget.query`` for this
service: the same picks, client, concurrency and request count). VictoriaMetrics is started by the harness's
``servers.VictoriaMetrics`` (BENCH_RUN_DIR), loaded with its ``/api/v1/import`` bodies and flushed, then stopped
at the end. One ``[alternate]`` row per phase goes to the harness's results file (BENCH_RESULTS).
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peers-dir", required=True, type=Path)
    p.add_argument("--target", action="append", default=[], help="LABEL=URL of a gateway of this service")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    a, rest = p.parse_known_args()
    # The harness's modules (and aiohttp, from its venv) are importable only once its folder is on the path.
    sys.path.insert(0, str(a.peers_dir))
    import aiohttp
    from bench_tsdb import VMTarget, ingest_once, query_phase
    from common import latency_summary, loopback_only, record, run_closed_loop
    from servers import VictoriaMetrics
    from target import HttpTarget
    from workload import add_workload_args, workload_from_args

    wp = argparse.ArgumentParser()
    add_workload_args(wp)
    wp.add_argument("--runs", type=int, default=1)  # accepted for symmetry with the target run
    w = workload_from_args(wp.parse_args(rest))
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in a.header)}
    targets: dict[str, Any] = {}
    for item in a.target:
        label, url = item.split("=", 1)
        loopback_only(url)
        targets[label] = HttpTarget(url, headers, w, "none")

    async def ours(t: Any, q: str) -> dict[str, Any]:
        conn = aiohttp.TCPConnector(limit=a.concurrency)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
            for i in range(3):  # warm-up, as the harness's loops do
                await t.query(s, q, 10_000 + i)
            res = await run_closed_loop(a.requests, a.concurrency, lambda i: t.query(s, q, i), 60.0)
        return {**latency_summary(res.latencies), "errors": res.errors, "req_per_s": round(res.ok / res.wall_s, 1)}

    async def run(vm_pid: int) -> None:
        vm = VMTarget(w, "import")
        systems = ["victoria-metrics", *targets]
        for r in range(a.rounds):
            for q in ("q1", "q2"):
                order = systems if r % 2 == 0 else list(reversed(systems))
                for name in order:
                    if name == "victoria-metrics":
                        row = await query_phase(vm, q, a.concurrency, a.requests, 60.0, vm_pid)
                    else:
                        row = await ours(targets[name], q)
                    record("alternate", f"{name} {q} round {r}", {"system": name, "query": q, "round": r, **row})

    server = VictoriaMetrics().start(fresh=True)
    try:
        vm = VMTarget(w, "import")
        loaded = asyncio.run(ingest_once(vm, vm.bodies(), 16, server.pid, 300.0, 120.0, force_flush=True))
        record("alternate", "victoria-metrics load", loaded)
        time.sleep(1.0)
        asyncio.run(run(server.pid))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
