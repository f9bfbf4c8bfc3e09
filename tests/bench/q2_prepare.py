"""q2 (one series in 1 h buckets) with its statement prepared, against the unnamed statement before, one run.

`python -m tests.bench.q2_prepare` (part of `make bench`) writes docs/benchmarks-q2-prepare.md:

1. The statement, from this process on one PostgreSQL (no HTTP): q2's rollup_hour statement in four forms,
   the forms alternating request by request on connections of their own, over 1 h (the peers' q2), 24 h and
   7 d: before (``device_id = ANY(…)`` arrays, unnamed: planned with its values every time), the same
   prepared (PostgreSQL chooses custom or generic plans), prepared with ``plan_cache_mode =
   force_custom_plan`` (parse skipped, planned every time) and now (one series: ``device_id = $ AND
   metric_name = $``, prepared). Each form's generic plan (``EXPLAIN (GENERIC_PLAN)``) and how many generic
   and custom plans PostgreSQL ran are listed beside the timings.
2. HTTP: the peers' q2 request (``POST /api/v1/telemetry/query``, one device and one metric, 1 h buckets over
   the hour; tests/bench/peers.py) against one gateway process of BENCH_BASE_TREE (a checkout of the commit
   before, e.g. ``git worktree add --detach /tmp/base a0f5922``) and one of this tree, alternating for
   BENCH_Q2_ROUNDS rounds: sequential p50/p99 and 50 concurrent clients (req/s, p99). Without
   BENCH_BASE_TREE only this tree's gateway is measured.

The data: BENCH_Q2_DEVICES devices (default 200) x 10 metrics x 7 days of rollup_hour rows, hour-major (as
ingestion writes them), vacuumed until all-visible; the 150-1,000 devices where the generic-plan trap was seen.
"""

import asyncio
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from gateway.query_plan import Plan, Source
from gateway.views.aggregates import Filter, _query
from tests.bench.bench_stack import bench_stack
from tests.bench.client import make_client
from tests.bench.config import env_int
from tests.bench.gateway_headroom import (
    request_path,
    request_path_tables,
    start_base_gateway,
    start_gateways,
    stop_gateways,
)
from tests.bench.request_path import DEVICE, METRIC
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-q2-prepare.md"
METRICS, DAYS = 10, 7
T0 = datetime(2031, 1, 1, tzinfo=UTC)
RANGES = {"1 h (peers' q2)": 1, "24 h": 24, "7 d": 24 * DAYS}
_HOUR = Plan(Source.HOUR, None)
# form -> (statement, prepare, plan_cache_mode)
FORMS: dict[str, tuple[bytes, bool, str]] = {
    "before: arrays, unnamed": (_query(_HOUR, "avg", True, Filter.DEVICES, False), False, "auto"),
    "arrays, prepared": (_query(_HOUR, "avg", True, Filter.DEVICES, False), True, "auto"),
    "arrays, prepared, force_custom_plan": (
        _query(_HOUR, "avg", True, Filter.DEVICES, False),
        True,
        "force_custom_plan",
    ),
    "now: one series, prepared": (_query(_HOUR, "avg", True, Filter.ONE_SERIES, False), True, "auto"),
}
_LOAD = """
INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
SELECT 'dev_' || lpad(d::text, 5, '0'), 'metric_' || m, %(t0)s + h * interval '1 hour', 60, 60.0 * d, 0, d, '{"z": 60}'
FROM generate_series(0, %(hours)s - 1) h, generate_series(0, %(devices)s - 1) d, generate_series(0, %(metrics)s - 1) m
"""


def say(message: str) -> None:
    print(f"[q2-prepare {time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def load(database_url: str, devices: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_LOAD, {"t0": T0, "hours": 24 * DAYS, "devices": devices, "metrics": METRICS})
        deadline = time.monotonic() + 120
        while True:  # a snapshot open elsewhere (autovacuum's ANALYZE) keeps VACUUM from marking pages
            conn.execute("VACUUM ANALYZE telemetry.rollup_hour")
            row = conn.execute(
                "SELECT relallvisible >= relpages FROM pg_class WHERE oid = 'telemetry.rollup_hour'::regclass"
            ).fetchone()
            if (row and row[0]) or time.monotonic() > deadline:
                return
            time.sleep(0.5)


_PROBE_SERIES = [
    """INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
       SELECT %(device)s, %(metric)s, date_trunc('hour', now()) - h * interval '1 hour', 60, 60.0 * h, 0, h, '{"z": 60}'
       FROM generate_series(0, 24) h""",
    """INSERT INTO telemetry.latest_values (device_id, metric_name, time, value_type, value_num, src_seq)
       VALUES (%(device)s, %(metric)s, now(), 0, 1.0, 1)""",
]


def seed_probe_series(database_url: str) -> None:
    """The series tests/bench/request_path.py reads (q1 latest value, q2 24 h of hours), written directly."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in _PROBE_SERIES:
            conn.execute(statement, {"device": DEVICE, "metric": METRIC})


def _pick(i: int, devices: int) -> tuple[str, str]:
    """The peers' pick: device (i * 7919 + 42) % devices, metric i % metrics."""
    return f"dev_{(i * 7919 + 42) % devices:05d}", f"metric_{i % METRICS}"


def _params(i: int, devices: int, hours: int) -> dict[str, Any]:
    device, metric = _pick(i, devices)
    start = T0 + timedelta(hours=24 * DAYS - hours)  # the last ``hours`` of the data
    return {"interval": timedelta(hours=1), "start": start, "end": start + timedelta(hours=hours),
            "metrics": [metric], "devices": [device], "metric": metric, "device": device}  # fmt: skip


@dataclass
class FormResult:
    p50: float
    p99: float
    generic: int
    custom: int


async def statements(database_url: str, devices: int, n: int) -> dict[str, dict[str, FormResult]]:
    """Per range and form: latency of statement + rows, forms alternating request by request."""
    out: dict[str, dict[str, FormResult]] = {}
    for label, hours in RANGES.items():
        conns = {}
        for form, (_, _, mode) in FORMS.items():
            conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
            await conn.execute(f"SET plan_cache_mode = {mode}".encode())  # one of our constants
            conns[form] = conn
        lat: dict[str, list[float]] = {form: [] for form in FORMS}
        try:
            for i in range(n + 50):
                params = _params(i, devices, hours)
                for form, (statement, prepare, _) in FORMS.items():
                    t = time.perf_counter()
                    cur = await conns[form].execute(statement, params, prepare=prepare)
                    rows = await cur.fetchall()
                    if i >= 50:  # warm-up: the prepared forms are prepared
                        lat[form].append(time.perf_counter() - t)
                    assert len(rows) == hours, (form, len(rows))
            out[label] = {}
            for form, conn in conns.items():
                cur = await conn.execute("SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
                                         "FROM pg_prepared_statements")  # fmt: skip
                generic, custom = await cur.fetchone() or (0, 0)
                out[label][form] = FormResult(pct(lat[form], 0.5), pct(lat[form], 0.99), int(generic), int(custom))
                say(f"{label} {form}: p50 {out[label][form].p50:.3f} ms p99 {out[label][form].p99:.3f} ms "
                    f"generic {generic} custom {custom}")  # fmt: skip
        finally:
            for conn in conns.values():
                await conn.close()
    return out


def generic_plans(database_url: str) -> dict[str, str]:
    """Each statement's generic plan, as the scan node that reads rollup_hour (index and conditions)."""
    out = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for form in ("before: arrays, unnamed", "now: one series, prepared"):
            names: list[str] = []

            def number(match: Any, names: list[str] = names) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            text = re.sub(r"%\((\w+)\)s", number, FORMS[form][0].decode())
            row = conn.execute(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {text}".encode()).fetchone()
            plan = row[0][0]["Plan"] if row else {}
            nodes = [plan]
            while nodes and "Relation Name" not in nodes[-1] and nodes[-1].get("Plans"):
                nodes.append(nodes[-1]["Plans"][0])
            scan = nodes[-1]
            if scan.get("Node Type") == "Bitmap Heap Scan":
                scan = {**scan, "Index Name": scan["Plans"][0].get("Index Name"), "Index Cond": scan["Recheck Cond"]}
            out[form] = (f"{scan.get('Node Type')} using {scan.get('Index Name')}: index condition "
                         f"`{scan.get('Index Cond', '-')}`, filter `{scan.get('Filter', '-')}`")  # fmt: skip
    return out


@dataclass
class HttpResult:
    seq_p50: float
    seq_p99: float
    rate: float
    conc_p99: float
    load: float


def _q2_body(i: int, devices: int) -> bytes:
    device, metric = _pick(i, devices)
    start = T0 + timedelta(hours=24 * DAYS - 1)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return msgspec.json.encode({"devices": [device], "metrics": [metric], "start_time": f"{start:{fmt}}",
                                "end_time": f"{start + timedelta(hours=1):{fmt}}", "aggregation": "avg",
                                "interval": 3600})  # fmt: skip


async def http(stack: Stack, devices: int, seq_n: int, per_client: int) -> HttpResult:
    """The peers' q2 sequentially, then from 50 concurrent clients; each answer checked for its one bucket."""
    bodies = [_q2_body(i, devices) for i in range(max(seq_n, 50 * per_client) + 300)]
    load = os.getloadavg()[0]

    async def one(client: Any, i: int, lat: list[float]) -> None:
        t = time.perf_counter()
        status, body = await client.post("/api/v1/telemetry/query", bodies[i])
        lat.append(time.perf_counter() - t)
        if status != 200 or b'"count":1' not in body:
            raise RuntimeError(f"q2: {status} {body[:300]!r}")

    seq = make_client("raw", stack.url, stack.headers, 1)
    conc = make_client("raw", stack.url, stack.headers, 50)
    try:
        warm: list[float] = []
        for i in range(300):
            await one(seq, i, warm)
        seq_lat: list[float] = []
        for i in range(seq_n):
            await one(seq, i, seq_lat)

        async def client_loop(c: int, lat: list[float]) -> None:
            for k in range(per_client):
                await one(conc, c * per_client + k, lat)

        await asyncio.gather(*(client_loop(c, warm) for c in range(50)))  # opens the 50 connections
        conc_lat: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(c, conc_lat) for c in range(50)))
        rate = len(conc_lat) / (time.perf_counter() - t0)
    finally:
        await seq.aclose()
        await conc.aclose()
    return HttpResult(pct(seq_lat, 0.5), pct(seq_lat, 0.99), rate, pct(conc_lat, 0.99), load)


def http_rounds(stack: Stack, base: Path | None, devices: int, rounds: int) -> dict[str, list[HttpResult]]:
    seq_n, per_client = env_int("BENCH_Q2_SEQ", 1500), env_int("BENCH_Q2_CONC_PER_CLIENT", 40)
    results: dict[str, list[HttpResult]] = {"before": [], "now": []} if base else {"now": []}
    for r in range(rounds):
        for name in results:
            if name == "before" and base is not None:
                start_base_gateway(stack, base)
            else:
                start_gateways(stack, 1)
            try:
                res = asyncio.run(http(stack, devices, seq_n, per_client))
            finally:
                stop_gateways(stack)
            results[name].append(res)
            say(f"round {r + 1} {name}: sequential p50 {res.seq_p50:.2f} ms p99 {res.seq_p99:.2f} ms; "
                f"50 concurrent {res.rate:,.0f} req/s p99 {res.conc_p99:.1f} ms (load {res.load:.1f})")  # fmt: skip
    return results


def report(
    forms: dict[str, dict[str, FormResult]], plans: dict[str, str], results: dict[str, list[HttpResult]],
    paths: dict[str, dict[str, dict[str, Any]]], devices: int, base_name: str, load: float,
) -> str:  # fmt: skip
    before = "before: arrays, unnamed"
    lines = [
        "# q2: the one-series statement prepared (issue 13)",
        "",
        f"Written by `python -m tests.bench.q2_prepare` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, load average before the run {load:.1f} (a shared machine: compare within a "
        f"table, not across runs). Data: {devices} devices x {METRICS} metrics x {DAYS} days of rollup_hour rows "
        f"({devices * METRICS * 24 * DAYS:,} rows), hour-major, vacuumed until all-visible.",
        "",
        "## 1. The statement alone (psycopg from the bench process, no HTTP)",
        "",
        "One connection per form, forms alternating request by request; each request one series (the peers' "
        "device and metric pick), its last 1 h / 24 h / 7 d in 1 h buckets: statement + rows, ms. "
        "generic/custom = plans PostgreSQL ran for the prepared statement.",
        "",
        "| range | form | p50 | p99 | p50 vs before | generic / custom plans |",
        "|---|---|---|---|---|---|",
    ]
    for label, by_form in forms.items():
        for form, f in by_form.items():
            plans_cell = "unnamed" if not FORMS[form][1] else f"{f.generic} / {f.custom}"
            lines.append(f"| {label} | {form} | {f.p50:.3f} | {f.p99:.3f} | {f.p50 / by_form[before].p50:.2f}x | "
                         f"{plans_cell} |")  # fmt: skip
    lines += ["", "Generic plans (`EXPLAIN (GENERIC_PLAN)`, the scan of rollup_hour):", ""]
    lines += [f"* {form}: {text}" for form, text in plans.items()]
    lines += ["", "## 2. HTTP: the peers' q2 request, one gateway process", ""]
    if "before" in results:
        lines.append(f"before = {base_name}; now = this tree. Gateways alternate, {len(results['now'])} rounds "
                     "(before first in each), same servers and data; per round: 300 warm-up requests, then "
                     "sequential, then 50 concurrent closed-loop clients. Medians over rounds; ratio now / before.")  # fmt: skip
    lines += ["", "| figure | " + " | ".join(results) + (" | ratio |" if "before" in results else " |"),
              "|---|" + "---|" * (len(results) + ("before" in results))]  # fmt: skip
    for attr, label, unit in (("seq_p50", "sequential p50", "ms"), ("seq_p99", "sequential p99", "ms"),
                              ("rate", "50 concurrent", "req/s"), ("conc_p99", "50 concurrent p99", "ms")):  # fmt: skip
        med = {name: statistics.median(getattr(r, attr) for r in rs) for name, rs in results.items()}
        cells = [f"{v:,.2f} {unit}" for v in med.values()]
        ratio = [f"{med['now'] / med['before']:.2f}x"] if "before" in med else []
        lines.append(f"| {label} | " + " | ".join(cells + ratio) + " |")
    lines += ["", "Per round (load average at the start of each measurement):", ""]
    for name, rs in results.items():
        for k, r in enumerate(rs):
            lines.append(f"* {name} round {k + 1}: sequential p50 {r.seq_p50:.2f} ms, p99 {r.seq_p99:.2f} ms; "
                         f"50 concurrent {r.rate:,.0f} req/s, p99 {r.conc_p99:.1f} ms; load {r.load:.1f}")  # fmt: skip
    lines += [
        "",
        "## 3. The request path in-process (tests/bench/request_path.py)",
        "",
        "The real app called as an ASGI app in one process (no socket, no HTTP parser, no client), builds "
        "alternating, medians over rounds; q2 there is `GET /aggregated?device_id=…` over 24 h (one series too). "
        "CPU per request over blocks of 50 requests (median / fastest block); sections are µs per request "
        "under cProfile (compare a section with itself across builds)"
        + (f"; before = {base_name}." if "before" in paths else "."),
        "",
        request_path_tables(paths),
    ]
    lines += [
        "",
        "Why one series and not the other forms: the array form's generic plan is whichever index the "
        "statistics favour (with migration 0014's covering (metric, hour) index it read every device's rows of "
        "the metric); `force_custom_plan` is a session setting that would also replan the gateway's other "
        "prepared statements (q1's latest value). The one-series statement's generic plan is the primary key "
        "with device, metric and time in its index condition; tests/integration/test_generic_plans.py checks "
        "that of every prepared device-filtered statement on an all-visible table of 150 devices.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    devices = env_int("BENCH_Q2_DEVICES", 200)
    rounds = env_int("BENCH_Q2_ROUNDS", 3)
    base_tree = Path(os.environ["BENCH_BASE_TREE"]) if os.environ.get("BENCH_BASE_TREE") else None
    with bench_stack("telemetry-q2-bench-") as (_root, servers, stack):
        stack.extra_env["TELEMETRY_QUERY_CACHE_SIZE"] = "0"  # the statement is measured, not the gateway's cache
        load_before = os.getloadavg()[0]
        stack.log_dir.mkdir(parents=True, exist_ok=True)
        say(f"loading {devices} devices x {METRICS} metrics x {DAYS} days of hours")
        load(servers.database_url, devices)
        forms = asyncio.run(statements(servers.database_url, devices, env_int("BENCH_Q2_STATEMENTS", 2000)))
        plans = generic_plans(servers.database_url)
        results = http_rounds(stack, base_tree, devices, rounds)
        seed_probe_series(servers.database_url)
        stack.start("ingest-worker")  # the probe's POSTs are consumed (or the gateway sheds load past the backlog)
        try:
            paths = request_path(stack, base_tree, env_int("BENCH_RP_REQUESTS", 1000), env_int("BENCH_RP_ROUNDS", 3))
        except subprocess.CalledProcessError as exc:
            say(f"request path probe failed:\n{exc.stderr[-3000:]}")
            raise
        base_name = os.environ.get("BENCH_BASE_NAME", str(base_tree))
        DOC.write_text(report(forms, plans, results, paths, devices, base_name, load_before))
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
