"""Checks behind /health and /health/detailed: NATS round trip, PostgreSQL, consumer lag."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gateway.metrics import OVERLOAD_REFUSALS
from gateway.state import GatewayState
from telemetry_core.checkpoints import halted_checkpoints
from telemetry_core.topology import CONSUMERS, SUBSCRIPTIONS_BUCKET
from telemetry_schemas.api.health import ComponentHealth

CHECK_TIMEOUT_S = 1.0


async def check_nats(gw: GatewayState) -> ComponentHealth:
    """Connected, and a flush round trip completes within the timeout."""
    if not gw.nc.is_connected:
        return ComponentHealth(status="unhealthy", detail="NATS is not connected")
    start = time.perf_counter()
    try:
        await gw.nc.flush(timeout=int(CHECK_TIMEOUT_S))
    except Exception as exc:
        return ComponentHealth(status="unhealthy", detail=f"NATS round trip failed: {exc!r}")
    return ComponentHealth(status="healthy", metrics={"rtt_ms": round((time.perf_counter() - start) * 1000, 3)})


async def check_db(gw: GatewayState) -> ComponentHealth:
    """A connection from the pool answers SELECT 1 within the timeout."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), gw.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ComponentHealth(status="unhealthy", detail=f"PostgreSQL is unavailable: {first}")
    stats = gw.pool.get_stats()
    return ComponentHealth(
        status="healthy",
        metrics={
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "pool_size": stats.get("pool_size", 0),
            "pool_available": stats.get("pool_available", 0),
        },
    )


async def consumer_lag(gw: GatewayState) -> dict[str, dict[str, Any]]:
    """Per durable consumer: messages not yet delivered (pending) and delivered but not acked."""
    lags: dict[str, dict[str, Any]] = {}
    for spec in CONSUMERS:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                info = await gw.js.consumer_info(spec.stream, spec.durable)
        except Exception as exc:
            lags[spec.durable] = {"error": repr(exc)}
            continue
        lags[spec.durable] = {
            "stream": spec.stream,
            "pending": info.num_pending,
            "ack_pending": info.num_ack_pending,
            "redelivered": info.num_redelivered,
            "waiting_pulls": info.num_waiting,
        }
    return lags


_ENGINES = """
SELECT partition, rules_seq, late_points, extract(epoch FROM now() - heartbeat_at) AS age_s
FROM telemetry.alert_engines ORDER BY partition
"""
ENGINE_ALIVE_S = 10.0


async def check_alert_engine(gw: GatewayState) -> ComponentHealth:
    """Healthy when at least one engine copy heartbeated in the last 10 s; lists every partition."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), gw.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            rows = await (await conn.execute(_ENGINES)).fetchall()
    except Exception as exc:
        return ComponentHealth(status="unknown", detail=f"engine heartbeats unreadable: {exc!r}")
    engines = {
        name: {"alive": age < ENGINE_ALIVE_S, "heartbeat_age_s": round(float(age), 1), "rules_seq": seq,
               "late_points": late}
        for name, seq, late, age in rows
    }  # fmt: skip
    alive = [n for n, e in engines.items() if e["alive"]]
    if not alive:
        return ComponentHealth(status="unhealthy", detail="no alert engine has reported in the last 10 s",
                               metrics={"engines": engines})  # fmt: skip
    return ComponentHealth(status="healthy", metrics={"engines": engines})


async def check_checkpoints(gw: GatewayState) -> ComponentHealth:
    """Consumers stopped because their stream changed under their checkpoint (telemetry_core/stream_guard.py).

    Unhealthy while any is: its read model (or alert engine) applies nothing more until it is replayed.
    """
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), gw.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            halted = await halted_checkpoints(conn)
    except Exception as exc:
        return ComponentHealth(status="unknown", detail=f"checkpoints unreadable: {exc!r}")
    if not halted:
        return ComponentHealth(status="healthy", metrics={"halted": {}})
    stopped = {name: {"stream": stream, "checkpoint": seq, "reason": reason} for name, stream, seq, reason in halted}
    detail = "stopped, stream changed under the checkpoint: " + "; ".join(reason for *_, reason in halted)
    return ComponentHealth(status="unhealthy", detail=detail, metrics={"halted": stopped})


def check_api_key_cache(gw: GatewayState) -> ComponentHealth:
    """The gateway's API key cache and deleted users: while a follower is down, revocations are not applied."""
    follower = gw.auth.keys.follower
    metrics = {"keys": len(gw.auth.keys)}
    deleted = gw.auth.deleted_users
    if deleted is not None:
        metrics["deleted_users"] = len(deleted)
    if not follower.healthy:
        detail = f"API key cache is resubscribing after: {follower.last_error or 'its follower stopped'}"
        return ComponentHealth(status="unhealthy", detail=detail, metrics=metrics)
    if deleted is not None and not deleted.follower.healthy:
        # Tokens of users deleted meanwhile are still accepted by this copy.
        detail = f"deleted-users feed is resubscribing after: {deleted.follower.last_error or 'its follower stopped'}"
        return ComponentHealth(status="unhealthy", detail=detail, metrics=metrics)
    return ComponentHealth(status="healthy", metrics=metrics)


WORKERS = ("ingest-worker", "projection-worker", "alert-worker")
WORKER_ALIVE_S = 5.0  # workers report every second (telemetry_core/metrics.py)


def check_workers(gw: GatewayState) -> ComponentHealth:
    """Each worker process's last heartbeat (its metrics report over NATS): down when none for 5 s.

    A process counts as up when any of its instances reported (alert engines report as alert-worker-<partition>,
    counted under alert-worker); the age is the youngest instance's. A worker never heard from since this gateway
    started shows heartbeat_age_s null.
    """
    grouped: dict[str, dict[str, float]] = {}
    for reported, instances in gw.reports.ages().items():
        process = next((w for w in WORKERS if reported == w or reported.startswith(f"{w}-")), reported)
        for instance, age in instances.items():
            grouped.setdefault(process, {})[instance if process == reported else f"{reported}/{instance}"] = age
    workers: dict[str, Any] = {}
    for process in sorted({*WORKERS, *grouped}):
        instances = grouped.get(process, {})
        youngest = min(instances.values(), default=None)
        workers[process] = {
            "alive": youngest is not None and youngest < WORKER_ALIVE_S,
            "heartbeat_age_s": None if youngest is None else round(youngest, 1),
            "instances": {name: round(age, 1) for name, age in sorted(instances.items())},
        }
    down = [p for p, w in workers.items() if not w["alive"] and p in WORKERS]
    if down:
        detail = f"no heartbeat in the last {WORKER_ALIVE_S:g} s from: {', '.join(down)}"
        return ComponentHealth(status="unhealthy", detail=detail, metrics=workers)
    return ComponentHealth(status="healthy", metrics=workers)


def check_definitions_cache(gw: GatewayState) -> ComponentHealth:
    """The gateway's metric-definitions cache: a follower that failed is resubscribing, and says why."""
    follower = gw.definitions.follower
    metrics = {"definitions": len(gw.definitions.definitions)}
    if follower.healthy:
        return ComponentHealth(status="healthy", metrics=metrics)
    detail = f"definitions cache is resubscribing after: {follower.last_error or 'its follower stopped'}"
    return ComponentHealth(status="unhealthy", detail=detail, metrics=metrics)


async def check_real_time_stream(gw: GatewayState) -> ComponentHealth:
    """This copy's sockets and what they sent and dropped; the subscriptions stored (every copy's)."""
    metrics: dict[str, Any] = dict(gw.live.figures())
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            metrics["subscriptions_stored"] = (await gw.js.stream_info(f"KV_{SUBSCRIPTIONS_BUCKET}")).state.messages
    except Exception as exc:
        return ComponentHealth(status="unhealthy", detail=f"subscriptions bucket unreadable: {exc!r}", metrics=metrics)
    return ComponentHealth(status="healthy", metrics=metrics)


# An hour over this long should have had its pending sketches folded (every ingest worker folds hours over for an
# hour, every TELEMETRY_SKETCH_COMPACTION_INTERVAL): older pending ones mean no worker is folding.
FOLD_OVERDUE = timedelta(hours=3)
_PENDING = "SELECT count(*), min(bucket) FROM telemetry.rollup_hour_pending"


async def check_hour_sketches(pool: AsyncConnectionPool) -> ComponentHealth:
    """The hours' pending percentile sketches (migration 0023): how many, and whether the ingest workers fold them.

    "degraded" while sketches of hours over for more than FOLD_OVERDUE are still pending: answers stay right (reads
    merge them), but they grow, and percentile reads with them, until an ingest worker folds again.
    """
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            row = await (await conn.execute(_PENDING)).fetchone()
    except Exception as exc:
        return ComponentHealth(status="unknown", detail=f"pending sketches unreadable: {exc!r}")
    count, oldest = (int(row[0]), row[1]) if row else (0, None)
    metrics = {"pending": count, "oldest_hour": oldest.isoformat() if oldest else None}
    if oldest is not None and oldest < datetime.now(UTC) - FOLD_OVERDUE:
        detail = (f"hour sketches are not being folded: {count} pending, the oldest for {oldest.isoformat()} "
                  "(each ingest worker folds them every TELEMETRY_SKETCH_COMPACTION_INTERVAL; see its "
                  "hour_sketch_compaction_failed log lines)")  # fmt: skip
        return ComponentHealth(status="degraded", detail=detail, metrics=metrics)
    return ComponentHealth(status="healthy", metrics=metrics)


def check_load(gw: GatewayState) -> ComponentHealth:
    """Overload: the ingest backlog and whether ingestion is shed, heavy queries, pool use, refusals so far.

    "shedding" while ingestion is refused (503 + Retry-After); the endpoint stays 200: reads and the rest go on.
    """
    stats = gw.pool.get_stats()
    metrics: dict[str, Any] = {
        "ingest": gw.backlog.figures(),
        "heavy_queries": gw.heavy.figures(),
        "pool": {"max_size": gw.pool.max_size, "size": stats.get("pool_size", 0),
                 "available": stats.get("pool_available", 0), "waiting": stats.get("requests_waiting", 0),
                 "statement_timeout_s": gw.settings.statement_timeout_s},
        "refused": refusals(),
    }  # fmt: skip
    if gw.backlog.shedding:
        detail = (f"shedding load: ingestion answers 503 with Retry-After while storage is "
                  f"{gw.backlog.backlog_s:.1f}s behind (limit {gw.backlog.max_backlog_s:g}s)")  # fmt: skip
        return ComponentHealth(status="shedding", detail=detail, metrics=metrics)
    return ComponentHealth(status="healthy", metrics=metrics)


def refusals() -> dict[str, int]:
    """Requests this gateway refused for overload since it started, by reason."""
    return {
        sample.labels["reason"]: int(sample.value)
        for family in OVERLOAD_REFUSALS.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
