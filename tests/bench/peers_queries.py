"""The peers harness's three queries only (no ingestion), against a gateway of a stack that already holds the data.

A plug-in to the peers harness, run by tests.bench.peers with the harness's Python (like peers_line.py: this file
imports nothing of the project): the harness's own query loop (``target.queries``: the same picks, client,
concurrency and request counts), recorded under ``--label`` in the harness's results file (``BENCH_RESULTS``).
tests.bench.peers points it at a second gateway with the query cache off, on the stack the JSON target loaded.
"""

import argparse
import asyncio
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--peers-dir", required=True, type=Path)
    p.add_argument("--base-url", required=True)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--label", required=True)
    p.add_argument("--server-pid", type=int, action="append", default=[])
    p.add_argument("--seq-requests", type=int, default=500)
    p.add_argument("--conc-requests", type=int, default=2000)
    p.add_argument("--query-concurrency", type=int, default=50)
    p.add_argument("--query-time-limit", type=float, default=15.0)
    a, rest = p.parse_known_args()
    # The harness's modules (and aiohttp, from its venv) are importable only once its folder is on the path.
    sys.path.insert(0, str(a.peers_dir))
    from common import loopback_only
    from target import HttpTarget, queries
    from workload import add_workload_args, workload_from_args

    wp = argparse.ArgumentParser()
    add_workload_args(wp)
    wp.add_argument("--runs", type=int, default=1)  # accepted for symmetry with the target run; no ingestion here
    w = workload_from_args(wp.parse_args(rest))
    loopback_only(a.base_url)
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in a.header)}
    asyncio.run(queries(HttpTarget(a.base_url, headers, w, "aggregated"), a, a.server_pid))


if __name__ == "__main__":
    main()
