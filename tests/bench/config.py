"""Benchmark sizes, read from BENCH_* environment variables (defaults finish in a few minutes on 2 cores)."""

import os
from dataclasses import dataclass


def env_int(name: str, default: int) -> int:
    """An integer size from the environment (unset or blank: ``default``); every bench module reads sizes so."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


@dataclass(frozen=True)
class BenchConfig:
    """How much of everything to do."""

    points: int  # end-to-end sustained run: total points (batches of batch_size)
    baseline_points: int  # direct COPY + upsert baseline
    batch_size: int  # points per HTTP batch and per baseline transaction
    devices: int  # distinct device ids in the sustained run
    concurrency: int  # concurrent HTTP clients in the sustained run
    lag_batches: int  # batches sent during the lag run
    lag_batch_points: int  # points per batch in the lag run
    lag_interval_ms: float  # one batch every this many ms (open loop)
    latency_requests: int  # single-point POSTs
    latency_concurrency: int
    client: str  # "raw" (minimal asyncio HTTP/1.1 client) or "httpx"
    drain_timeout_s: float  # give up waiting for points to become queryable after this long
    extra_ingest_workers: int  # > 0: one more sustained run with this many more ingest-worker processes
    definitions: int  # metric definitions for the definitions phase (0 skips it)
    defs_points: int  # points per condition (with / without definitions), over all rounds
    defs_rounds: int  # rounds of four segments (ABBA, then BAAB, …); each segment is defs_points / (2 rounds)
    get_requests: int  # GET /api/v1/telemetry/metrics/{name} requests
    get_concurrency: int
    one_loop: bool  # last: the sustained run again with TELEMETRY_INGEST_CONCURRENCY=1 (the loop count before)
    profile: bool  # sample gateway and ingest worker with py-spy during the sustained run (if installed)
    quiet_share: float  # before a phase, wait until processes not ours use less than this share of a core …
    quiet_max_s: float  # … but no longer than this (a quarter of it before each definitions segment)
    query_points: int  # points loaded for the query phase: devices x query_metrics x one per query_step_min (0 skips)
    query_metrics: int  # metrics per device in the query data set
    query_step_min: int  # minutes between two points of a series (7 days: 1008 points at 10)
    query_batch: int  # points per HTTP batch while loading the query data set
    query_requests: int  # requests per query kind and source
    query_concurrency: int
    query_max_s: float  # no query request starts later than this after its run's clock started
    query_min_s: float  # fast queries go on until this long (CPU windows shorter than that say little)
    query_alone_requests: int  # requests per query kind and source, one at a time (unloaded latency)
    csv_repeats: int  # CSV exports per kind (sequential)
    alert_breaches: int  # breaching points for the ack → alert latency (0 skips it)
    alert_poll_ms: float  # sleep between two GET /alerts polls
    alert_rules: int  # enabled rules for the ingestion-with-rules comparison …
    alert_points: int  # … and points per condition (0 skips it)
    alert_drain_max_s: float  # wait at most this long for the alert engine to drain after the load

    @classmethod
    def from_env(cls) -> "BenchConfig":
        return cls(
            points=env_int("BENCH_POINTS", 1_000_000),
            baseline_points=env_int("BENCH_BASELINE_POINTS", 500_000),
            batch_size=env_int("BENCH_BATCH_SIZE", 1000),
            devices=env_int("BENCH_DEVICES", 50),
            concurrency=env_int("BENCH_CONCURRENCY", 8),
            lag_batches=env_int("BENCH_LAG_BATCHES", 500),
            lag_batch_points=env_int("BENCH_LAG_BATCH_POINTS", 100),
            lag_interval_ms=_float("BENCH_LAG_INTERVAL_MS", 20.0),
            latency_requests=env_int("BENCH_LATENCY_REQUESTS", 4000),
            latency_concurrency=env_int("BENCH_LATENCY_CONCURRENCY", 16),
            client=os.environ.get("BENCH_CLIENT", "raw").strip().lower() or "raw",
            drain_timeout_s=_float("BENCH_DRAIN_TIMEOUT", 180.0),
            extra_ingest_workers=env_int("BENCH_EXTRA_INGEST_WORKERS", 1),
            definitions=env_int("BENCH_DEFINITIONS", 100),
            defs_points=env_int("BENCH_DEFS_POINTS", 200_000),
            defs_rounds=env_int("BENCH_DEFS_ROUNDS", 2),
            get_requests=env_int("BENCH_GET_REQUESTS", 4000),
            get_concurrency=env_int("BENCH_GET_CONCURRENCY", 16),
            one_loop=os.environ.get("BENCH_ONE_LOOP", "1") != "0",
            profile=os.environ.get("BENCH_PROFILE", "") == "1",
            quiet_share=_float("BENCH_QUIET_SHARE", 0.15),
            quiet_max_s=_float("BENCH_QUIET_MAX_S", 12.0),
            query_points=env_int("BENCH_QUERY_POINTS", 1_512_000),
            query_metrics=env_int("BENCH_QUERY_METRICS", 10),
            query_step_min=env_int("BENCH_QUERY_STEP_MIN", 10),
            query_batch=env_int("BENCH_QUERY_BATCH", 100),
            query_requests=env_int("BENCH_QUERY_REQUESTS", 400),
            query_concurrency=env_int("BENCH_QUERY_CONCURRENCY", 16),
            query_max_s=_float("BENCH_QUERY_MAX_S", 15.0),
            query_min_s=_float("BENCH_QUERY_MIN_S", 2.0),
            query_alone_requests=env_int("BENCH_QUERY_ALONE_REQUESTS", 20),
            csv_repeats=env_int("BENCH_CSV_REPEATS", 5),
            alert_breaches=env_int("BENCH_ALERT_BREACHES", 100),
            alert_poll_ms=_float("BENCH_ALERT_POLL_MS", 3.0),
            alert_rules=env_int("BENCH_ALERT_RULES", 1000),
            alert_points=env_int("BENCH_ALERT_POINTS", 300_000),
            alert_drain_max_s=_float("BENCH_ALERT_DRAIN_MAX_S", 120.0),
        )
