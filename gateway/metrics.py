"""The gateway's Prometheus figures, the workers' reported ones, and the scrape-time figures of JetStream.

Workers report their registries over core NATS (telemetry_core/metrics.py); ``WorkerReports`` keeps the last
report of every worker instance. It also serves as each worker's heartbeat for /health/detailed.
"""

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from telemetry_core.metrics import INSTANCE_HEADER, REPORT_SUBJECT_PREFIX
from telemetry_core.topology import CONSUMERS, DLQ_STREAM

# Reports older than this are dropped from /metrics (the worker is gone or cut off).
STALE_S = 30.0
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

GATEWAY_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "telemetry_http_requests", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
HTTP_SECONDS = Histogram(
    "telemetry_http_request_duration_seconds", "HTTP request latency, by route template and method.",
    ["route", "method"], buckets=_LATENCY_BUCKETS, registry=GATEWAY_REGISTRY,
)  # fmt: skip
EVENTS_OUT_FAILED = Counter(
    "telemetry_integration_events_failed",
    "Platform events (FR-019) the gateway failed to publish; the command still succeeded (NFR-005), by event name.",
    ["event"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
POINTS_ACCEPTED = Counter(
    "telemetry_points_accepted", "Points the gateway validated and JetStream acknowledged.", registry=GATEWAY_REGISTRY
)
POINTS_REJECTED = Counter(
    "telemetry_points_rejected", "Points the gateway refused (invalid; named in the response).",
    registry=GATEWAY_REGISTRY,
)  # fmt: skip
PUBLISH_SECONDS = Histogram(
    "telemetry_publish_duration_seconds", "Time from publishing points to JetStream's PubAck.",
    buckets=_LATENCY_BUCKETS, registry=GATEWAY_REGISTRY,
)  # fmt: skip
PUBLISH_RETRIES = Counter(
    "telemetry_publish_retries_total", "Point publishes sent again within the publish timeout (node loss, election).",
    registry=GATEWAY_REGISTRY,
)  # fmt: skip
RATE_LIMIT_SHARED = Counter(
    "telemetry_rate_limit_shared", "Requests and points spent at other gateway copies, taken from this copy's "
    "buckets (gateway/auth/rate_share.py).", ["kind"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
CONSUMER_PENDING = Gauge(
    "telemetry_consumer_pending", "Messages of the stream not yet delivered to the durable consumer (at scrape).",
    ["stream", "consumer"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
CONSUMER_ACK_PENDING = Gauge(
    "telemetry_consumer_ack_pending", "Messages delivered to the durable consumer and not yet acknowledged.",
    ["stream", "consumer"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
PROJECTION_LAG = Gauge(
    "telemetry_projection_lag_messages",
    "Messages a read model (or the ingest worker) has not applied yet: pending + unacknowledged.",
    ["consumer"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
DLQ_MESSAGES = Gauge(
    "telemetry_dlq_messages", "Dead letters held in the DLQ stream, by worker.", ["worker"], registry=GATEWAY_REGISTRY
)
WORKER_HEARTBEAT_AGE = Gauge(
    "telemetry_worker_heartbeat_age_seconds", "Seconds since each worker instance last reported.",
    ["process", "instance"], registry=GATEWAY_REGISTRY,
)  # fmt: skip

# --- overload (gateway/backlog.py, gateway/heavy_queries.py, gateway/errors.py) ---
OVERLOAD_REFUSALS = Counter(
    "telemetry_overload_refusals",
    "Requests refused because the service is overloaded, by reason: ingest_backlog (storage too far behind), "
    "pool_busy (no database connection free in time), heavy_queue (too many heavy queries waiting), "
    "statement_timeout (a query ran past TELEMETRY_STATEMENT_TIMEOUT), read_conflict (a read replica cancelled a "
    "read to replay the primary's changes).",
    ["reason"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
INGEST_BACKLOG_SECONDS = Gauge(
    "telemetry_ingest_backlog_seconds", "Age of the oldest acknowledged point the ingest worker has not stored.",
    registry=GATEWAY_REGISTRY,
)  # fmt: skip
INGEST_SHEDDING = Gauge(
    "telemetry_ingest_shedding", "1 while this gateway refuses ingestion because the backlog is over the limit.",
    registry=GATEWAY_REGISTRY,
)  # fmt: skip
# --- the latest-value cache (gateway/latest_cache.py) ---
FAST_READ_ANSWERS = Counter(
    "telemetry_fast_read_answers",
    "/latest and /query requests this gateway process answered in front of Litestar (gateway/fast_reads.py), by "
    "route and status; the others went through Litestar's routing (bad input, refused credentials, other query "
    "parameters, compressed bodies).",
    ["route", "status"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
FAST_INGEST_ANSWERS = Counter(
    "telemetry_fast_ingest_answers",
    "Single-point POSTs this gateway process answered in front of Litestar (gateway/fast_ingest.py), by route and "
    "status; the others went through Litestar's routing (compressed or non-JSON bodies, bad device ids, refused "
    "credentials).",
    ["route", "status"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
LATEST_CACHE_ANSWERS = Counter(
    "telemetry_latest_cache_answers",
    "/latest answers of this gateway process while its latest-value cache is on: hit (from the cache, no "
    "PostgreSQL round trip) or miss (read from latest_values).",
    ["result"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
LATEST_CACHE_PREFILLS = Counter(
    "telemetry_latest_cache_prefills",
    "Series this gateway process's latest-value cache read ahead of any request because a notice announced them "
    "(gateway/latest_prefill.py): kept, or not kept (latest_values not caught up yet: tried again, up to 4 times).",
    ["result"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
QUERY_CACHE_HELD = Gauge(
    "telemetry_query_cache_held",
    "What this gateway process's query cache holds now: answers, and data points in them (bounded by "
    "TELEMETRY_QUERY_CACHE_SIZE and 200,000 points).",
    ["what"], registry=GATEWAY_REGISTRY,
)  # fmt: skip
QUERY_BATCH_REQUESTS = Histogram(
    "telemetry_query_batch_requests",
    "One-series aggregates answered per statement by this gateway process's batched reads "
    "(gateway/views/series_batches.py): 1 = a request that ran alone.",
    buckets=(1, 2, 4, 8, 16, 32, 64), registry=GATEWAY_REGISTRY,
)  # fmt: skip
QUERY_CACHE_ANSWERS = Counter(
    "telemetry_query_cache_answers",
    "One-series POST /query answers of this gateway process while its query cache is on: hit (kept from an "
    "earlier read no stored notice has made stale, no PostgreSQL round trip) or miss (computed).",
    ["result"], registry=GATEWAY_REGISTRY,
)  # fmt: skip


@dataclass
class Report:
    """The last report of one worker instance."""

    received: float  # time.monotonic()
    text: str


class WorkerReports:
    """Every worker instance's last report; as a Collector it re-exposes them labelled process and instance."""

    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], Report] = {}
        self.started = time.monotonic()
        self._sub: Subscription | None = None

    async def start(self, nc: Client) -> None:
        """Subscribe to every worker's reports (core NATS: each gateway gets them all)."""
        self._sub = await nc.subscribe(f"{REPORT_SUBJECT_PREFIX}.>", cb=self._on_report)

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_report(self, msg: Msg) -> None:
        process = msg.subject[len(REPORT_SUBJECT_PREFIX) + 1 :]
        instance = (msg.headers or {}).get(INSTANCE_HEADER, "?")
        self.reports[(process, instance)] = Report(time.monotonic(), msg.data.decode(errors="replace"))

    def ages(self) -> dict[str, dict[str, float]]:
        """Seconds since the last report, per process and instance."""
        now = time.monotonic()
        out: dict[str, dict[str, float]] = {}
        for (process, instance), report in self.reports.items():
            out.setdefault(process, {})[instance] = now - report.received
        return out

    def collect(self) -> Iterator[Metric]:
        """The live instances' families, merged by name, each sample labelled with its process and instance."""
        now = time.monotonic()
        merged: dict[str, Metric] = {}
        for (process, instance), report in list(self.reports.items()):
            if now - report.received > STALE_S:
                continue
            try:
                families = list(text_string_to_metric_families(report.text))
            except ValueError:
                continue  # a malformed report is skipped, never fatal to the scrape
            for family in families:
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for s in family.samples:
                    labels = {**s.labels, "process": process, "instance": instance}
                    target.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
        yield from merged.values()


async def refresh_stream_figures(js: JetStreamContext, timeout_s: float = 1.0) -> None:
    """Read consumer and DLQ figures from JetStream into the gauges (at scrape time; failures leave them as were)."""
    for spec in CONSUMERS:
        try:
            async with asyncio.timeout(timeout_s):
                info = await js.consumer_info(spec.stream, spec.durable)
        except Exception:
            structlog.get_logger().debug("consumer_info_failed", consumer=spec.durable)
            continue
        CONSUMER_PENDING.labels(spec.stream, spec.durable).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(spec.stream, spec.durable).set(info.num_ack_pending or 0)
        PROJECTION_LAG.labels(spec.durable).set((info.num_pending or 0) + (info.num_ack_pending or 0))
    try:
        async with asyncio.timeout(timeout_s):
            dlq = await js.stream_info(DLQ_STREAM, subjects_filter="telemetry.dlq.>")
    except Exception:
        return
    for subject, count in (dlq.state.subjects or {}).items():
        DLQ_MESSAGES.labels(subject.rpartition(".")[2]).set(count)


def exposition(reports: WorkerReports) -> bytes:
    """The text format of the gateway's figures followed by the workers' (one document, no duplicate family)."""
    for process, instances in reports.ages().items():
        for instance, age in instances.items():
            WORKER_HEARTBEAT_AGE.labels(process, instance).set(round(age, 3))
    worker_registry = CollectorRegistry(auto_describe=False)
    worker_registry.register(reports)
    return generate_latest(GATEWAY_REGISTRY) + generate_latest(worker_registry)
