"""Streams, subjects and durable consumers, declared once as code and ensured idempotently."""

import os
from dataclasses import dataclass, field

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import NotFoundError

from telemetry_core.crash_journal import ensure_bucket
from telemetry_core.nats_version import require_consumer_reset
from telemetry_core.replicas import cluster_size, resolve_replicas
from telemetry_core.settings import Settings, ack_wait_from_env

_log = structlog.get_logger("topology")

POINTS_STREAM = "POINTS"
EVENTS_STREAM = "EVENTS"
NOTICES_STREAM = "NOTICES"
DLQ_STREAM = "DLQ"
# Captures the deletions other platform services publish (FR-020), so none is missed while workers are down.
PLATFORM_STREAM = "PLATFORM"
PLATFORM_CONSUMER = "platform_events"
# Key-value bucket of real-time subscriptions (gateway/live/subscriptions_kv.py); its TTL expires idle ones.
SUBSCRIPTIONS_BUCKET = "SUBSCRIPTIONS"

INGEST_CONSUMER = "ingest"
LATEST_PROJECTION_CONSUMER = "projection_latest"
METRIC_DEFINITIONS_CONSUMER = "projection_metric_definitions"
ROLLUP_PROJECTION_CONSUMER = "projection_rollups"
METRIC_EVENTS = "telemetry.events.metric.>"
RULE_EVENTS = "telemetry.events.rule.>"
ALERT_EVENTS = "telemetry.events.alert.>"
# Core NATS (not stored): gateways ask each alert engine whether it applied a rule event (alert_worker/rules_applied.py)
RULES_APPLIED = "telemetry.alert_engines.rules_applied"
ALERT_RULES_CONSUMER = "projection_alert_rules"
ALERTS_CONSUMER = "projection_alerts"
API_KEY_EVENTS = "telemetry.events.apikey.>"
API_KEYS_CONSUMER = "projection_api_keys"
DEVICE_STATS_CONSUMER = "projection_device_stats"
DEAD_LETTER_STATS_CONSUMER = "projection_dead_letter_stats"

_DAY = 86_400

# POINTS is stored as telemetry.points.<slot>.<device>: the server maps every message published on
# telemetry.points.<device> to one of POINT_SLOTS slots (FNV-1a of the device, its partition()
# mapping function), so a consumer can filter on slots and publishers need not know the hash.
# Fixed for good: changing it would move devices between alert partitions.
POINT_SLOTS = 64
_POINTS_PREFIX = "telemetry.points."
POINTS_PUBLISH = "telemetry.points.*"
POINTS_ALL = "telemetry.points.>"
POINTS_SLOT_TRANSFORM = SubjectTransform(
    src=POINTS_PUBLISH, dest=f"telemetry.points.{{{{partition({POINT_SLOTS},1)}}}}.{{{{wildcard(1)}}}}"
)


def points_subject(device_id: str) -> str:
    """Subject one device's point batches are published on (the stream stores them under their slot)."""
    return f"{_POINTS_PREFIX}{device_id}"


def slot_of(device_id: str) -> int:
    """The device's slot, computed as the server's partition() mapping does (FNV-1a 32 bit)."""
    h = 0x811C9DC5
    for byte in device_id.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % POINT_SLOTS


def slot_of_points_subject(subject: str) -> int:
    """The slot of a stored points subject (computed for legacy telemetry.points.<device> messages)."""
    rest = subject[len(_POINTS_PREFIX) :]
    slot, dot, _device = rest.partition(".")
    return int(slot) if dot and slot.isdigit() else slot_of(rest)


def partition_slots(partition: int, partitions: int) -> list[int]:
    """The slots alert partition ``partition`` of ``partitions`` owns."""
    return [s for s in range(POINT_SLOTS) if s % partitions == partition]


def stored_subject(device_id: str) -> str:
    """Subject of a lone notice that a device's batch is committed (writers before StoredNotices; tests)."""
    return f"telemetry.stored.{device_id}"


# The subject of StoredNotices (one ingest transaction's notices): two tokens after telemetry.stored, so no
# device's subject (device ids hold no dots) is ever this one; telemetry.stored.> still covers it.
STORED_BATCH_SUBJECT = "telemetry.stored.batch.notices"


# Core NATS only (no stream holds it): what an ingest transaction is about to write, announced before its commit
# to the gateways' query caches (ingest_worker/storing.py, gateway/query_cache.py).
STORING_SUBJECT = "telemetry.storing"


def event_subject(kind: str, key: str) -> str:
    """Subject of a domain event; kind "metric" and key "temperature" give telemetry.events.metric.temperature."""
    return f"telemetry.events.{kind}.{key}"


def metric_subject(name: str) -> str:
    """Subject holding one metric definition's events; its last message is the current state."""
    return event_subject("metric", name)


def rule_subject(rule_id: str) -> str:
    """Subject holding one alert rule's events."""
    return event_subject("rule", rule_id)


def alert_subject(alert_id: str) -> str:
    """Subject holding one alert's lifecycle events (triggered, acknowledged, resolved)."""
    return event_subject("alert", alert_id)


def alert_engine_consumer(partition: int, partitions: int) -> "ConsumerSpec":
    """The alert engine's durable consumer on POINTS for one device partition: the server sends only its slots.

    The single-token filter also delivers messages stored before the stream had slots (they keep their
    old subject until max_age removes them); the engine sorts those by slot itself.
    """
    durable = f"alerts_{partition}_of_{partitions}"
    if partitions == 1:
        return ConsumerSpec(POINTS_STREAM, durable, POINTS_ALL)
    filters = (POINTS_PUBLISH, *(f"{_POINTS_PREFIX}{s}.*" for s in partition_slots(partition, partitions)))
    return ConsumerSpec(POINTS_STREAM, durable, "", filter_subjects=filters)


def api_key_subject(key_id: str) -> str:
    """Subject holding one API key's events (created, revoked)."""
    return event_subject("apikey", key_id)


def dlq_subject(worker: str) -> str:
    """Dead-letter subject of one worker."""
    return f"telemetry.dlq.{worker}"


def device_of_points_subject(subject: str) -> str:
    """The device id a points subject names ('' when the subject is not a points subject).

    Stored subjects are telemetry.points.<slot>.<device>; telemetry.points.<device> is how they are
    published (and how messages stored before slots existed still read). Device ids hold no dots.
    """
    if not subject.startswith(_POINTS_PREFIX):
        return ""
    return subject[len(_POINTS_PREFIX) :].rpartition(".")[2]


def stream_configs(settings: Settings, replicas: int = 1) -> list[StreamConfig]:
    """The streams this service needs, with the settings applied, each on ``replicas`` servers (replicas.py)."""
    configs = [
        StreamConfig(
            name=POINTS_STREAM,
            # Only telemetry.points.<device> is accepted; the transform stores it under its slot, so no
            # publisher can pick a slot (and thereby an alert partition) for a device.
            subjects=[POINTS_PUBLISH],
            subject_transform=POINTS_SLOT_TRANSFORM,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=float(settings.points_max_age_s),
            duplicate_window=float(settings.duplicate_window_s),
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=["telemetry.events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=float(settings.duplicate_window_s),
        ),
        StreamConfig(
            name=NOTICES_STREAM,
            subjects=["telemetry.stored.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=float(settings.points_max_age_s),
            duplicate_window=float(settings.duplicate_window_s),
        ),
        StreamConfig(
            name=DLQ_STREAM,
            subjects=["telemetry.dlq.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=float(30 * _DAY),
        ),
        StreamConfig(
            name=PLATFORM_STREAM,
            subjects=sorted({settings.device_deleted_subject, settings.user_deleted_subject}),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=float(30 * _DAY),
            duplicate_window=float(settings.duplicate_window_s),
        ),
    ]
    for config in configs:
        config.num_replicas = replicas
    return configs


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer on a stream."""

    stream: str
    durable: str
    filter_subject: str
    # From TELEMETRY_ACK_WAIT when the spec is built (at import for the module constants below).
    ack_wait_s: float = field(default_factory=lambda: ack_wait_from_env(os.environ))
    max_ack_pending: int = 20_000
    # Several filters instead of filter_subject (e.g. an alert partition's slots).
    filter_subjects: tuple[str, ...] = ()

    def config(self) -> ConsumerConfig:
        """The JetStream consumer config."""
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=None if self.filter_subjects else self.filter_subject,
            filter_subjects=list(self.filter_subjects) or None,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            # Redelivery limits are enforced by our consumer loop, which dead-letters with a reason.
            max_deliver=-1,
        )


INGEST = ConsumerSpec(POINTS_STREAM, INGEST_CONSUMER, POINTS_ALL)
LATEST_PROJECTION = ConsumerSpec(NOTICES_STREAM, LATEST_PROJECTION_CONSUMER, "telemetry.stored.>")
METRIC_DEFINITIONS_PROJECTION = ConsumerSpec(EVENTS_STREAM, METRIC_DEFINITIONS_CONSUMER, METRIC_EVENTS)
ROLLUP_PROJECTION = ConsumerSpec(NOTICES_STREAM, ROLLUP_PROJECTION_CONSUMER, "telemetry.stored.>")
ALERT_RULES_PROJECTION = ConsumerSpec(EVENTS_STREAM, ALERT_RULES_CONSUMER, RULE_EVENTS)
ALERTS_PROJECTION = ConsumerSpec(EVENTS_STREAM, ALERTS_CONSUMER, ALERT_EVENTS)
API_KEYS_PROJECTION = ConsumerSpec(EVENTS_STREAM, API_KEYS_CONSUMER, API_KEY_EVENTS)
DEVICE_STATS_PROJECTION = ConsumerSpec(NOTICES_STREAM, DEVICE_STATS_CONSUMER, "telemetry.stored.>")
DEAD_LETTER_STATS_PROJECTION = ConsumerSpec(DLQ_STREAM, DEAD_LETTER_STATS_CONSUMER, "telemetry.dlq.>")
CONSUMERS = (
    INGEST,
    LATEST_PROJECTION,
    METRIC_DEFINITIONS_PROJECTION,
    ROLLUP_PROJECTION,
    ALERT_RULES_PROJECTION,
    ALERTS_PROJECTION,
    API_KEYS_PROJECTION,
    DEVICE_STATS_PROJECTION,
    DEAD_LETTER_STATS_PROJECTION,
)


def platform_consumer(settings: Settings) -> ConsumerSpec:
    """The projection worker's durable consumer of the platform's deletions (subjects from the settings)."""
    subjects = tuple(sorted({settings.device_deleted_subject, settings.user_deleted_subject}))
    return ConsumerSpec(PLATFORM_STREAM, PLATFORM_CONSUMER, subjects[0], filter_subjects=subjects)


async def ensure_topology(js: JetStreamContext, settings: Settings) -> None:
    """Create or update every stream and durable consumer; safe to call from every process.

    Updating POINTS from the slot-less config (subjects telemetry.points.>) adds the slot transform:
    messages already stored keep their telemetry.points.<device> subject and stay where they are; every
    POINTS consumer's filter still matches them (see alert_engine_consumer), and new ones get slots.
    """
    # Before any change: a server without consumer resets, or a cluster too small for the replicas asked, stops
    # the process with the reason.
    version = js._nc.connected_server_version
    require_consumer_reset((version.major, version.minor), settings.allow_old_nats, structlog.get_logger())
    try:
        existing = (await js.stream_info(POINTS_STREAM)).config.num_replicas
    except NotFoundError:
        existing = None
    replicas = resolve_replicas(settings.stream_replicas, cluster_size(js._nc), existing)
    for config in stream_configs(settings, replicas):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
    for spec in (*CONSUMERS, platform_consumer(settings)):
        await ensure_consumer(js, spec)
    await ensure_subscriptions_bucket(js, settings, replicas)
    await ensure_crash_journal(js, replicas)


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create or update one durable consumer; warn when that changes the ack_wait another process set.

    Every process of a deployment must use the same TELEMETRY_ACK_WAIT: each start sets the consumers to its
    own value, so two values flip them back and forth (and a process keeping messages "in progress" every
    ack_wait/3 of its own value may let a shorter server-side ack_wait expire under it). A rolling change of
    the setting logs this once per process; any other time it names the mismatch.
    """
    try:
        before = (await js.consumer_info(spec.stream, spec.durable)).config.ack_wait
    except NotFoundError:
        before = None
    await js.add_consumer(spec.stream, spec.config())
    if before is not None and abs(before - spec.ack_wait_s) > 1e-3:
        _log.warning(
            "consumer_ack_wait_changed", consumer=spec.durable, stream=spec.stream, was_s=before,
            now_s=spec.ack_wait_s, hint="every process must run with the same TELEMETRY_ACK_WAIT",
        )  # fmt: skip


async def ensure_crash_journal(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the consumers' crash journal bucket (telemetry_core/crash_journal.py) when it is missing."""
    await ensure_bucket(js, replicas)


async def ensure_subscriptions_bucket(js: JetStreamContext, settings: Settings, replicas: int = 1) -> None:
    """Create the SUBSCRIPTIONS bucket, or bring its TTL and replicas to the configured ones."""
    ttl = float(settings.subscription_ttl_s)
    try:
        info = await js.stream_info(f"KV_{SUBSCRIPTIONS_BUCKET}")
    except NotFoundError:
        config = KeyValueConfig(SUBSCRIPTIONS_BUCKET, history=1, ttl=ttl, storage=StorageType.FILE, replicas=replicas)
        await js.create_key_value(config)
        return
    if info.config.max_age != ttl or (info.config.num_replicas or 1) != replicas:
        info.config.max_age, info.config.num_replicas = ttl, replicas
        # JetStream refuses a de-duplication window longer than max_age.
        info.config.duplicate_window = min(info.config.duplicate_window or ttl, ttl)
        await js.update_stream(info.config)
