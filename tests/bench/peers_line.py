"""InfluxDB's own line-protocol bodies, byte for byte, sent to this service's ``POST /write?precision=s``.

A plug-in to the peers harness (run by tests.bench.peers with the harness's Python, which has aiohttp and
the harness's modules on its path; this file imports nothing of the project): the same workload, the same
bodies the harness sends to InfluxDB's ``/write``, the same client loop and concurrency; "visible" polls
the same count query as the harness's JSON target. Records ``target line protocol ingest`` in the
harness's results file (``BENCH_RESULTS``), next to InfluxDB's ``ingest influxdb /write …`` row.
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peers-dir", required=True, type=Path)
    p.add_argument("--base-url", required=True)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--visible-timeout", type=float, default=300.0)
    a, rest = p.parse_known_args()
    # The harness's modules (and aiohttp, from its venv) are importable only once its folder is on the path.
    sys.path.insert(0, str(a.peers_dir))
    import aiohttp
    from common import check, latency_summary, loopback_only, record, run_closed_loop
    from target import HttpTarget
    from workload import add_workload_args, workload_from_args

    wp = argparse.ArgumentParser()
    add_workload_args(wp)
    wp.add_argument("--runs", type=int, default=1)  # accepted for symmetry with the target run; one run here
    w = workload_from_args(wp.parse_args(rest))
    loopback_only(a.base_url)
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in a.header)}
    bodies = w.influx_line_bodies()
    target = HttpTarget(a.base_url, headers, w, "aggregated")

    async def run() -> dict:
        conn = aiohttp.TCPConnector(limit=a.concurrency)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:
            url = f"{target.base}/write?precision=s"

            async def one(i: int) -> None:
                async with s.post(url, data=bodies[i], headers=headers) as r:
                    await check(r, (204,))

            t0 = time.perf_counter()
            res = await run_closed_loop(len(bodies), a.concurrency, one, 600)
            acked = res.wall_s
            expected = w.total_points * res.ok // len(bodies)
            n, deadline = 0, time.perf_counter() + a.visible_timeout
            while time.perf_counter() < deadline:
                n = await target.count(s)
                if n >= expected:
                    break
                await asyncio.sleep(0.1)
            visible = time.perf_counter() - t0
        lat = latency_summary(res.latencies)
        return {"requests_ok": res.ok, "errors": res.errors, "error_samples": res.error_samples[:3],
                "points_sent": expected, "counted": n, "acked_s": round(acked, 3),
                "points_per_s_acked": round(expected / acked, 1), "all_visible": n >= expected,
                "points_per_s_visible": round(expected / visible, 1) if n >= expected else None,
                "req_p50_ms": lat.get("p50_ms"), "req_p99_ms": lat.get("p99_ms")}  # fmt: skip

    record("target", "target line protocol ingest", asyncio.run(run()))


if __name__ == "__main__":
    main()
