"""Prometheus figures of a worker process, and the loop that reports them (and so its heartbeat) to the gateways.

Workers serve no HTTP port: every ``REPORT_INTERVAL_S`` each worker publishes its registry, in the
Prometheus text format, on core NATS to ``telemetry.metrics.<process>``. Every gateway subscribes, serves the
figures of all live workers on its own ``/metrics`` (labelled ``process`` and ``instance``), and uses the time of
the last report as the worker's heartbeat in ``/health/detailed``. One scrape target, no extra ports to open,
and a worker that stops reporting is both missing from /metrics and "down" in the health answer.
"""

import asyncio
import os
import socket

import structlog
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from telemetry_core.stopping import sleep_or_stop

REPORT_SUBJECT_PREFIX = "telemetry.metrics"
REPORT_INTERVAL_S = 1.0
INSTANCE_HEADER = "X-Telemetry-Instance"

# One registry per worker process; the gateway has its own (gateway/metrics.py), so the two never mix.
WORKER_REGISTRY = CollectorRegistry(auto_describe=True)

CONSUMER_MESSAGES = Counter(
    "telemetry_consumer_messages",
    "Messages a durable consumer settled, by outcome: ack, term (dead-lettered whole), nak (redelivery asked).",
    ["consumer", "outcome"],
    registry=WORKER_REGISTRY,
)
DEAD_LETTERS = Counter(
    "telemetry_dead_letters",
    "Dead letters published (whole messages or the rejected points of one), by consumer.",
    ["consumer"],
    registry=WORKER_REGISTRY,
)
BATCH_SECONDS = Histogram(
    "telemetry_consumer_batch_seconds",
    "Time a handler took for one fetched batch, by consumer.",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=WORKER_REGISTRY,
)
POINTS_WRITTEN = Counter(
    "telemetry_ingest_points_written", "Rows the ingest worker upserted into points.", registry=WORKER_REGISTRY
)
SKETCHES_COMPACTED = Counter(
    "telemetry_rollup_hour_sketches_compacted",
    "Hour rows whose pending sketches an ingest worker folded into them (migration 0023).",
    registry=WORKER_REGISTRY,
)
KEYED_REWRITES = Counter(
    "telemetry_ingest_keyed_rewrites",
    "Ingest batches copied a second time, one row per key, because a (device, metric, time) repeated in them.",
    registry=WORKER_REGISTRY,
)
POINTS_NEW = Counter(
    "telemetry_ingest_points_inserted",
    "Of those, rows that were new (not overwrites of a stored point).",
    registry=WORKER_REGISTRY,
)
EVENTS_OUT_FAILED = Counter(
    "telemetry_integration_events_failed",
    "Platform events (FR-019) a worker failed to publish; ingestion carried on (NFR-005), by event name.",
    ["event"],
    registry=WORKER_REGISTRY,
)
POINTS_REJECTED = Counter(
    "telemetry_ingest_points_rejected",
    "Points of directly published messages the ingest worker dead-lettered.",
    registry=WORKER_REGISTRY,
)
ALERT_EVALUATIONS = Counter(
    "telemetry_alert_points_evaluated",
    "Points the alert engine went through: evaluated against its rules, or passed over unread (no rule watches "
    "their metrics: telemetry_alert_points_unwatched counts those too).",
    registry=WORKER_REGISTRY,
)
ALERT_UNWATCHED = Counter(
    "telemetry_alert_points_unwatched",
    "Points the alert engine passed over unread because no enabled rule of its partition watches their metrics. "
    "High while rules exist for those metrics: the engine's rule index is behind (its rule events not applied).",
    registry=WORKER_REGISTRY,
)
ALERT_RULES_WAITING = Gauge(
    "telemetry_alert_rule_changes_waiting",
    "Rule changes the alert engine has received but that are not in force yet: each takes effect once the engine "
    "has evaluated the POINTS messages accepted before it (alert_worker/rules.py). Above 0 for long: the engine is "
    "behind its stream.",
    registry=WORKER_REGISTRY,
)
ALERT_TRANSITIONS = Counter(
    "telemetry_alert_state_changes",
    "Alert state changes the engine published, by kind (triggered, resolved).",
    ["kind"],
    registry=WORKER_REGISTRY,
)
PROJECTION_APPLIED = Counter(
    "telemetry_projection_messages_applied",
    "Messages a projection applied (redeliveries below its checkpoint are not counted).",
    ["projection"],
    registry=WORKER_REGISTRY,
)


def report_subject(process: str) -> str:
    """Where ``process`` (e.g. ingest-worker) reports."""
    return f"{REPORT_SUBJECT_PREFIX}.{process}"


def instance_id() -> str:
    """This process among its copies: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def report_forever(nc: Client, process: str, stop: asyncio.Event, log: structlog.stdlib.BoundLogger) -> None:
    """Publish the registry every REPORT_INTERVAL_S until stop; a failed publish is skipped (best effort)."""
    subject, headers = report_subject(process), {INSTANCE_HEADER: instance_id()}
    failures = 0
    while True:
        try:
            await nc.publish(subject, generate_latest(WORKER_REGISTRY), headers=headers)
            failures = 0
        except Exception as exc:
            failures += 1
            if failures == 1:
                log.warning("metrics_report_failed", error=repr(exc))
        if await sleep_or_stop(stop, REPORT_INTERVAL_S):
            return
