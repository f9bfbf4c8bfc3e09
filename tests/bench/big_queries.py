"""`make bench-big`: the spec's 10 M-point query benchmark (1,000 devices x 10 metrics), written to
docs/benchmarks-big-queries.md.

Loads the data straight into PostgreSQL through the ingest transaction's own SQL (tests/bench/big_load.py),
starts the gateway on it, times the spec's query shapes (tests/bench/big_query_set.py) one at a time and
from concurrent clients, and measures the p99-over-30-d regression before/after its fix in the same run
(tests/bench/big_regression.py). Not part of `make bench`: the load alone takes several minutes here.

Knobs (environment): BIGQ_DEVICES (1000), BIGQ_METRICS (10), BIGQ_STEP_MIN (10: 1,008 points per series over
7 days), BIGQ_CHUNK_DEVICES (10 devices per write transaction), BIGQ_LOAD_CONNECTIONS (2), BIGQ_SEQ (200
sequential requests), BIGQ_CONCURRENCY (16), BIGQ_REQUESTS (800 concurrent requests), BIGQ_MAX_S (15 s per
phase at most), BIGQ_BEFORE_REF (git ref of the code before the fix; empty skips the HTTP comparison),
BIGQ_REGRESSION_DEVICES (150: make bench's query data set), BIGQ_PARTS ("big,regression"; one of them re-runs
that part only and keeps the other's text in the document).
"""

import asyncio
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.big_load import BigLoad, load_direct
from tests.bench.big_query_set import QUERIES, BigQuery
from tests.bench.big_regression import before_tree, time_statement
from tests.bench.big_report import COMPARED, PARTS, big_part, regression_part, write_doc
from tests.bench.big_timing import Timed, time_query
from tests.bench.client import make_client
from tests.bench.config import env_int
from tests.bench.machine import machine_info
from tests.bench.queries import Dataset
from tests.support.servers import Servers, start_servers
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-big-queries.md"
BEFORE_REF = "86f8f72"  # main before the fix of the rollup statements' generic plans


def say(message: str) -> None:
    print(f"[big-queries] {message}", flush=True)


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


async def time_all(url: str, headers: dict[str, str], ds: Dataset, queries: tuple[BigQuery, ...]) -> list[Timed]:
    concurrency = env_int("BIGQ_CONCURRENCY", 16)
    client = make_client("raw", url, headers, concurrency)
    out = []
    try:
        for query in queries:
            timed = await time_query(
                client, ds, query, sequential=env_int("BIGQ_SEQ", 200), concurrency=concurrency,
                requests=env_int("BIGQ_REQUESTS", 800), max_s=float(env_int("BIGQ_MAX_S", 15)),
            )  # fmt: skip
            say(f"{query.key}: sequential p50 {timed.seq_p(50) * 1000:.2f} ms p99 {timed.seq_p(99) * 1000:.2f} ms; "
                f"{concurrency} concurrent {timed.rps:,.0f} req/s p99 {timed.conc_p(99) * 1000:.1f} ms; "
                f"load {load_avg()}")  # fmt: skip
            out.append(timed)
    finally:
        await client.aclose()
    return out


async def compare(before: Stack, after: Stack, ds: Dataset) -> dict[str, list[Timed]]:
    queries = tuple(q for q in QUERIES if q.key in COMPARED)
    out: dict[str, list[Timed]] = {}
    for _ in range(2):
        for label, stack in (("before", before), ("after", after)):
            say(f"regression, {label} the fix (load {load_avg()})")
            for t in await time_all(stack.url, stack.headers, ds, queries):
                out.setdefault(f"{label}:{t.key}", []).append(t)
    return out


def _dataset(devices: int) -> Dataset:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return Dataset(devices, env_int("BIGQ_METRICS", 10), env_int("BIGQ_STEP_MIN", 10), now)


def _load(servers: Servers, ds: Dataset) -> BigLoad:
    say(f"loading {ds.points:,} points (load {load_avg()})")
    load = asyncio.run(
        load_direct(
            servers.database_url, ds, chunk_devices=env_int("BIGQ_CHUNK_DEVICES", 10),
            connections=env_int("BIGQ_LOAD_CONNECTIONS", 2), say=say,
        )
    )  # fmt: skip
    say(f"loaded: {load}")
    return load


def _before_after(servers: Servers, root: Path, ds: Dataset, ref: str) -> dict[str, list[Timed]] | None:
    """The compared queries through a gateway of ``ref`` and one of this code (None: no tree for ref)."""
    tree = before_tree(ref, root / "before") if ref else None
    if tree is None:
        return None
    no_cache = {"TELEMETRY_QUERY_CACHE_SIZE": "0"}  # the database's figures, not the gateway's query cache
    before = Stack(servers, root / "logs-before", extra_env=no_cache, suite_settings=False)
    after = Stack(servers, root / "logs-after", extra_env=no_cache, suite_settings=False)
    try:
        before.start("gateway", TELEMETRY_GATEWAY_PROCESSES="1", PYTHONPATH=str(tree))
        after.start("gateway", TELEMETRY_GATEWAY_PROCESSES="1")
        before.wait_healthy(timeout=300)
        after.wait_healthy(timeout=300)
        return asyncio.run(compare(before, after, ds))
    finally:
        before.stop_all()
        after.stop_all()


def run_big(root: Path, ref: str) -> str:
    """Part one: the 10 M points, the spec's queries, the regression's statement at this size."""
    ds = _dataset(env_int("BIGQ_DEVICES", 1000))
    servers = start_servers(root / "servers", durable=True)
    stack = Stack(servers, root / "logs", extra_env={"TELEMETRY_QUERY_CACHE_SIZE": "0"}, suite_settings=False)
    try:
        load = _load(servers, ds)
        stack.start("gateway")
        stack.wait_healthy(timeout=300)
        machine = machine_info(servers.database_url, root, stack.env())
        loads: dict[str, str] = {}
        timed: list[Timed] = []
        for query in QUERIES:
            loads[query.key] = load_avg()
            timed += asyncio.run(time_all(stack.url, stack.headers, ds, (query,)))
        stack.stop_all()
        say("the count statement, default vs never prepared")
        statement = time_statement(servers.database_url, ds, env_int("BIGQ_STATEMENT_RUNS", 200))
        compared = _before_after(servers, root, ds, ref)
        processes = os.environ.get("TELEMETRY_GATEWAY_PROCESSES", "default (one per core)")
        return big_part(ds, load, timed, loads, statement, compared, ref, machine, processes)
    finally:
        stack.stop_all()
        servers.stop()


def run_regression(root: Path, ref: str) -> str:
    """Part two: make bench's query data set (150 devices), where the regression showed, before/after."""
    ds = _dataset(env_int("BIGQ_REGRESSION_DEVICES", 150))
    servers = start_servers(root / "servers", durable=True)
    try:
        started = load_avg()
        load = _load(servers, ds)
        say("the count statement, default vs never prepared")
        statement = time_statement(servers.database_url, ds, env_int("BIGQ_STATEMENT_RUNS", 200))
        compared = _before_after(servers, root, ds, ref)
        return regression_part(ds, load, statement, compared, ref, started)
    finally:
        servers.stop()


def main() -> None:
    parts = os.environ.get("BIGQ_PARTS", ",".join(PARTS)).split(",")
    ref = os.environ.get("BIGQ_BEFORE_REF", BEFORE_REF)
    root = Path(tempfile.mkdtemp(prefix="telemetry-bigq-"))
    try:
        texts = {}
        if "big" in parts:
            texts["big"] = run_big(root / "big", ref)
        if "regression" in parts:
            texts["regression"] = run_regression(root / "regression", ref)
        write_doc(DOC, texts)
        say(f"wrote {DOC}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
