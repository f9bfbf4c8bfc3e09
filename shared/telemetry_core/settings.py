"""Typed settings, parsed once per process from an explicit environment mapping."""

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from telemetry_core.errors import ConfigurationError

T = TypeVar("T", int, float)
# Alert partitions own slots of POINTS (topology.POINT_SLOTS): more partitions than slots would own nothing.
_MAX_ALERT_PARTITIONS = 64
_MIN_SIGNING_KEY = 16


def _number(env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T], lo: T, hi: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a {kind.__name__} between {lo} and {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigurationError(f"{name} must be between {lo} and {hi}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be on or off (1/0, true/false, yes/no), got {value!r}")


def _networks(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = env.get(name, default)
    nets = tuple(n.strip() for n in raw.split(",") if n.strip())
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigurationError(f"{name}: {net!r} is not an IP network (e.g. 10.0.0.0/8 or ::1/128)") from None
    return nets


_DURATION = re.compile(r"[0-9]+(ms|s|m|h)")


def _sync_interval(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip().lower() or "always"
    if value != "always" and not _DURATION.fullmatch(value):
        raise ConfigurationError(
            f"{name} must be 'always' (fsync before every acknowledgement, the default) or a duration such as "
            f"'1s' or '2m' (acknowledge at once, fsync that often: acknowledged points can be lost on power loss), "
            f"got {value!r}"
        )
    return value


_MIN_MQTT_PASSWORD = 16


def _mqtt_password(env: Mapping[str, str]) -> str:
    """TELEMETRY_MQTT_PASSWORD; required (and long enough) once the MQTT listener leaves loopback."""
    password = env.get("TELEMETRY_MQTT_PASSWORD", "").strip()
    if password and len(password) < _MIN_MQTT_PASSWORD:
        raise ConfigurationError(f"TELEMETRY_MQTT_PASSWORD must be at least {_MIN_MQTT_PASSWORD} characters")
    host = env.get("TELEMETRY_MQTT_HOST", "").strip() or "127.0.0.1"
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a host name: assume it is reachable from elsewhere
    if not password and not loopback and _mqtt_port(env, "TELEMETRY_MQTT_PORT", 1883):
        raise ConfigurationError(
            f"TELEMETRY_MQTT_HOST={host} opens the MQTT listener beyond this machine: set TELEMETRY_MQTT_PASSWORD "
            f"(at least {_MIN_MQTT_PASSWORD} characters; devices sign in as TELEMETRY_MQTT_USERNAME, default "
            "'device') or keep the listener on 127.0.0.1"
        )
    return password


def _mqtt_port(env: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port, or 0 for "no listener" (also spelled off/false/no)."""
    value = env.get(name, "").strip().lower()
    if value in ("off", "false", "no"):
        return 0
    if not value:
        return default
    if not value.isdigit() or int(value) > 65535:
        raise ConfigurationError(f"{name} must be a port (1..65535) or 0/off to disable MQTT, got {value!r}")
    return int(value)


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value) if value else None


def ack_wait_from_env(env: Mapping[str, str]) -> float:
    """TELEMETRY_ACK_WAIT: the consumers' ack_wait in seconds (1 to 3600, default 30).

    A function of its own because the consumer specs (topology.py) are module constants built at import,
    before any Settings exists; every process of a deployment must see the same value, or each start
    would update the durable consumers to its own.
    """
    return _number(env, "TELEMETRY_ACK_WAIT", 30.0, float, 1.0, 3600.0)


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if not value.startswith(schemes):
        raise ConfigurationError(f"{name} must start with one of {', '.join(schemes)}, got {value!r}")
    return value


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of names; empty means the default."""
    return tuple(t.strip() for t in env.get(name, "").split(",") if t.strip()) or default


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a process needs to know about its environment.

    ``nats_url`` / ``database_url`` of None mean "start embedded servers" (only ``telemetry run``
    does that; the single-process commands require both).
    """

    nats_url: str | None = None
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8218
    data_dir: Path = Path(".telemetry-data")
    api_keys: tuple[str, ...] = ()
    # Shared by the gateway and the workers: signs admitted POINTS messages (telemetry_core.points_validator).
    signing_key: str = field(default="", repr=False)
    # POINTS keeps messages this long: the window in which projections can be replayed.
    points_max_age_s: int = 7 * 86_400
    # JetStream de-duplicates a batch_id re-sent within this window.
    duplicate_window_s: int = 600
    publish_timeout_s: float = 2.0
    # Seconds a message taken by a process that then died waits before JetStream hands it to another
    # (TELEMETRY_ACK_WAIT): every durable consumer's ack_wait. Read by topology.ConsumerSpec (ack_wait_from_env).
    ack_wait_s: float = 30.0
    # JetStream replicas of every stream (TELEMETRY_STREAM_REPLICAS); None: as many as the cluster offers, up
    # to 3 (1 on a single node). Asking for more than the cluster has stops the process (topology.py).
    stream_replicas: int | None = None
    # Run on a nats-server older than 2.14 (TELEMETRY_ALLOW_OLD_NATS): without consumer resets a crashed
    # projection or alert engine can skip what it held (consumer_reset.py), so the processes refuse it unless asked.
    allow_old_nats: bool = False
    db_timeout_s: float = 2.0
    db_pool_max: int = 10
    max_body_bytes: int = 16 * 1024 * 1024
    ingest_fetch_batch: int = 64
    # The cyclic collector's young-generation threshold in every long-running process (gc_tuning.py); 0: Python's.
    gc_threshold: int = 50_000
    ingest_workers: int = 1
    # Concurrent fetch→write loops per ingest worker: one decodes while another waits on PostgreSQL.
    ingest_concurrency: int = 2
    # A fetch of several POINTS messages but less than a batch waits this long for more (one transaction, one
    # commit, one notice message for them all); a lone message is written at once. 0: never wait.
    ingest_linger_s: float = 0.02
    # The alert engine's linger after a fetch of several (but less than a batch of) POINTS messages: one evaluation
    # pass, commit and fetch for many small writers. Rule changes stay exact (alert_worker/rules.py). 0: never wait.
    alert_linger_s: float = 0.05
    max_deliveries: int = 10
    # Up to this many points in range, percentiles are computed exactly from raw points, not sketches.
    exact_percentile_points: int = 200_000
    # Alert engine: this copy evaluates the devices whose POINTS slot (topology.slot_of) % partitions == partition.
    alert_partition: int = 0
    alert_partitions: int = 1
    alert_lateness_s: int = 300
    alert_tick_s: float = 1.0
    partitions_ahead_days: int = 7
    event_prefix: str = "telemetry_service"
    # Platform events in (FR-020): the subjects other services publish deletions on (captured by stream PLATFORM).
    device_deleted_subject: str = "device_service.device.deleted"
    user_deleted_subject: str = "account_service.user.deleted"
    # Real-time streaming: a subscription with no open socket is forgotten after this many seconds; a
    # connect token is valid this long; a socket buffers at most this many points between two messages.
    subscription_ttl_s: int = 300
    connect_token_ttl_s: int = 120
    stream_buffer_points: int = 10_000
    ws_compression: bool = False
    log_format: str = "auto"
    log_level: str = "info"
    # JWT bearer tokens (gateway/auth/jwt_verifier.py): any of an HS256 secret, a PEM public key file
    # (RS256/ES256) or a JWKS file enables them; issuer and audience are checked when set.
    jwt_secret: str = ""
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = 30.0
    # Scope of a token without a ``scope`` claim.
    jwt_default_scope: str = "read"
    # X-Internal-Call: true is honoured only when on, and only from these networks.
    trust_internal_calls: bool = False
    trusted_networks: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    # Per key (or token subject), per gateway copy; 0 = unlimited.
    rate_limit_requests: float = 0.0
    rate_limit_points: float = 0.0
    # How many seconds of the rate a key may spend at once (the bucket size).
    rate_limit_burst_s: float = 1.0
    # An external auth service asked about credentials the gateway does not know itself; its answers are
    # cached, and when it cannot be reached the local answer stands (the PRD's "graceful fallback").
    auth_service_url: str | None = None
    auth_service_timeout_s: float = 1.0
    auth_service_cache_s: float = 60.0
    # The embedded nats-server's JetStream sync_interval: "always" fsyncs before acknowledging (a 200 is on
    # disk); a duration (e.g. "2m", nats-server's own default) trades that for throughput (README).
    nats_sync_interval: str = "always"
    # The embedded nats-server's MQTT listener (`telemetry run` only; README, "MQTT devices"): 0 = none.
    # Without a password it has no authorization of its own, hence loopback only; with one, every MQTT client
    # must sign in with these credentials (one shared pair: NATS MQTT's own authorization block).
    mqtt_port: int = 1883
    mqtt_host: str = "127.0.0.1"
    mqtt_username: str = "device"
    mqtt_password: str = field(default="", repr=False)
    # /health/detailed names streams, consumers, counts and pool sizes: it needs a key unless this is on.
    public_health_details: bool = False
    # Line protocol (/write, /api/v2/write): the device id is the first of these tags a line has.
    line_protocol_device_tags: tuple[str, ...] = ("device_id", "host")
    # "refuse" a line whose device id or metric name has a dot; "underscore" writes dots as underscores.
    line_protocol_dots: str = "refuse"
    # --- gateway overload and headroom (gateway/overload.py, gateway/heavy_queries.py, telemetry run) ---
    # Shed ingestion (503 + Retry-After) while the oldest point the ingest worker has not stored is older
    # than this many seconds; 0 turns shedding off. Re-measured every backlog_check_s, off the request path.
    max_ingest_backlog_s: float = 10.0
    backlog_check_s: float = 0.5
    # Every statement of the gateway's pool is cancelled after this (a timed-out query answers 504).
    statement_timeout_s: float = 15.0
    # Queries that read raw points across a range (aggregations from raw, CSV export) at most this many at once;
    # the rest queue up to heavy_query_wait_s, then answer 503 busy. 0: half the pool (at least 1).
    heavy_query_concurrency: int = 0
    heavy_query_wait_s: float = 10.0
    # `telemetry run`: gateway processes sharing the port (SO_REUSEPORT); 0 = the machine's cores.
    gateway_processes: int = 0
    # Bind the gateway's port with SO_REUSEPORT (set by `telemetry run` for its gateway copies).
    gateway_reuse_port: bool = False
    # -- retention (telemetry_core/retention.py): kept days of raw points and rollups, how often the job runs --
    retention_default_days: int = 90  # points of metrics without a definition (a definition's own default is 90)
    rollup_retention_days: int = 730  # rollup_minute / rollup_hour rows, whatever their metric's raw retention
    retention_interval_s: int = 3600  # 0: the ingest worker never runs the job (run `telemetry retention run`)
    retention_chunk_rows: int = 5000  # rows per DELETE transaction when a partition cannot be dropped whole
    # Seconds between folds of the hours' pending sketches into their rows, in each ingest worker (migration 0023).
    sketch_compaction_interval_s: float = 30.0
    # -- reads from a streaming replica (gateway/read_pool.py, docs/scaling.md) --
    # DATABASE_READ_URL: the gateway's views read there, and commands wait until it shows their event's checkpoint
    # (read-your-writes); the rest of the gateway and every worker keep DATABASE_URL. None: one pool, the primary.
    database_read_url: str | None = None
    # -- the gateway's latest-value cache (gateway/latest_cache.py, docs/architecture.md "Latest-value cache") --
    # Entries per gateway process (least recently used out); 0 turns the cache off. Off by itself with a NATS
    # cluster (several NATS_URL servers) or DATABASE_READ_URL. An entry is re-read after latest_cache_ttl_s.
    latest_cache_size: int = 100_000
    latest_cache_ttl_s: float = 60.0
    # Seconds between the rounds that read the series notices announced before any request does (the first read of
    # a series is then a hit; gateway/latest_prefill.py); 0 turns it off.
    latest_prefill_interval_s: float = 0.5
    # -- the gateway's query cache (gateway/query_cache.py): one-series read answers, dropped by the same
    # notices; off (0) in the same cases. At most query_cache_size answers, re-read after query_cache_ttl_s. --
    query_cache_size: int = 10_000
    query_cache_ttl_s: float = 30.0
    # One-series aggregates from rollups (and latest-value fills) that arrive while others of their kind are being
    # answered run together, up to this many in one statement (gateway/views/series_batches.py); 0 or 1: each alone.
    query_batch_max: int = 32
    # GET …/latest and POST /query answered in front of Litestar when plainly valid (gateway/fast_reads.py).
    fast_reads: bool = True
    # The single-point POST answered in front of Litestar when plainly valid (gateway/fast_ingest.py).
    fast_ingest: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Parse settings from a mapping such as ``os.environ``; raise ConfigurationError on bad values."""
        keys = tuple(k.strip() for k in env.get("TELEMETRY_API_KEYS", "").split(",") if k.strip())
        return cls(
            nats_url=_url(env, "NATS_URL", ("nats://", "tls://", "ws://", "wss://")),
            database_url=_url(env, "DATABASE_URL", ("postgresql://", "postgres://")),
            host=env.get("TELEMETRY_HOST", "127.0.0.1").strip() or "127.0.0.1",
            port=_number(env, "TELEMETRY_PORT", 8218, int, 1, 65535),
            data_dir=Path(env.get("TELEMETRY_DATA_DIR", ".telemetry-data")),
            api_keys=keys,
            signing_key=env.get("TELEMETRY_SIGNING_KEY", "").strip(),
            points_max_age_s=_number(env, "TELEMETRY_POINTS_MAX_AGE", 7 * 86_400, int, 60, 10 * 365 * 86_400),
            duplicate_window_s=_number(env, "TELEMETRY_DUPLICATE_WINDOW", 600, int, 1, 86_400),
            publish_timeout_s=_number(env, "TELEMETRY_PUBLISH_TIMEOUT", 2.0, float, 0.05, 60.0),
            ack_wait_s=ack_wait_from_env(env),
            stream_replicas=_number(env, "TELEMETRY_STREAM_REPLICAS", 0, int, 0, 5) or None,
            allow_old_nats=_flag(env, "TELEMETRY_ALLOW_OLD_NATS"),
            db_timeout_s=_number(env, "TELEMETRY_DB_TIMEOUT", 2.0, float, 0.05, 60.0),
            db_pool_max=_number(env, "TELEMETRY_DB_POOL_MAX", 10, int, 1, 500),
            max_body_bytes=_number(env, "TELEMETRY_MAX_BODY_BYTES", 16 * 1024 * 1024, int, 1024, 1 << 30),
            ingest_fetch_batch=_number(env, "TELEMETRY_INGEST_BATCH", 64, int, 1, 10_000),
            gc_threshold=_number(env, "TELEMETRY_GC_THRESHOLD", 50_000, int, 0, 10_000_000),
            ingest_workers=_number(env, "TELEMETRY_INGEST_WORKERS", 1, int, 1, 64),
            ingest_concurrency=_number(env, "TELEMETRY_INGEST_CONCURRENCY", 2, int, 1, 16),
            ingest_linger_s=_number(env, "TELEMETRY_INGEST_LINGER", 0.02, float, 0.0, 1.0),
            alert_linger_s=_number(env, "TELEMETRY_ALERT_LINGER", 0.05, float, 0.0, 1.0),
            alert_partition=_number(env, "TELEMETRY_ALERT_PARTITION", 0, int, 0, _MAX_ALERT_PARTITIONS - 1),
            alert_partitions=_number(env, "TELEMETRY_ALERT_PARTITIONS", 1, int, 1, _MAX_ALERT_PARTITIONS),
            alert_lateness_s=_number(env, "TELEMETRY_ALERT_LATENESS", 300, int, 0, 86_400),
            alert_tick_s=_number(env, "TELEMETRY_ALERT_TICK", 1.0, float, 0.05, 60.0),
            exact_percentile_points=_number(env, "TELEMETRY_EXACT_PERCENTILE_POINTS", 200_000, int, 0, 10**9),
            max_deliveries=_number(env, "TELEMETRY_MAX_DELIVERIES", 10, int, 1, 1000),
            partitions_ahead_days=_number(env, "TELEMETRY_PARTITIONS_AHEAD_DAYS", 7, int, 0, 366),
            subscription_ttl_s=_number(env, "TELEMETRY_SUBSCRIPTION_TTL", 300, int, 10, 7 * 86_400),
            connect_token_ttl_s=_number(env, "TELEMETRY_CONNECT_TOKEN_TTL", 120, int, 5, 86_400),
            stream_buffer_points=_number(env, "TELEMETRY_STREAM_BUFFER", 10_000, int, 10, 1_000_000),
            ws_compression=_choice(env, "TELEMETRY_WS_COMPRESSION", "off", ("on", "off")) == "on",
            event_prefix=env.get("TELEMETRY_EVENT_PREFIX", "telemetry_service").strip(". ") or "telemetry_service",
            device_deleted_subject=env.get("TELEMETRY_DEVICE_DELETED_SUBJECT", "").strip(". ")
            or "device_service.device.deleted",
            user_deleted_subject=env.get("TELEMETRY_USER_DELETED_SUBJECT", "").strip(". ")
            or "account_service.user.deleted",
            log_format=_choice(env, "TELEMETRY_LOG_FORMAT", "auto", ("auto", "json", "console")),
            log_level=_choice(env, "TELEMETRY_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            jwt_secret=env.get("TELEMETRY_JWT_SECRET", "").strip(),
            jwt_public_key_file=_path(env, "TELEMETRY_JWT_PUBLIC_KEY_FILE"),
            jwt_jwks_file=_path(env, "TELEMETRY_JWT_JWKS_FILE"),
            jwt_issuer=env.get("TELEMETRY_JWT_ISSUER", "").strip() or None,
            jwt_audience=env.get("TELEMETRY_JWT_AUDIENCE", "").strip() or None,
            jwt_leeway_s=_number(env, "TELEMETRY_JWT_LEEWAY", 30.0, float, 0.0, 3600.0),
            jwt_default_scope=_choice(env, "TELEMETRY_JWT_DEFAULT_SCOPE", "read", ("ingest", "read", "admin")),
            trust_internal_calls=_flag(env, "TELEMETRY_TRUST_INTERNAL_CALLS"),
            trusted_networks=_networks(env, "TELEMETRY_TRUSTED_NETWORKS", "127.0.0.1/32,::1/128"),
            rate_limit_requests=_number(env, "TELEMETRY_RATE_LIMIT_REQUESTS", 0.0, float, 0.0, 1e9),
            rate_limit_points=_number(env, "TELEMETRY_RATE_LIMIT_POINTS", 0.0, float, 0.0, 1e12),
            rate_limit_burst_s=_number(env, "TELEMETRY_RATE_LIMIT_BURST", 1.0, float, 0.01, 3600.0),
            auth_service_url=_url(env, "TELEMETRY_AUTH_SERVICE_URL", ("http://", "https://")),
            auth_service_timeout_s=_number(env, "TELEMETRY_AUTH_SERVICE_TIMEOUT", 1.0, float, 0.05, 30.0),
            auth_service_cache_s=_number(env, "TELEMETRY_AUTH_SERVICE_CACHE", 60.0, float, 0.0, 86_400.0),
            nats_sync_interval=_sync_interval(env, "TELEMETRY_NATS_SYNC_INTERVAL"),
            mqtt_port=_mqtt_port(env, "TELEMETRY_MQTT_PORT", 1883),
            mqtt_host=env.get("TELEMETRY_MQTT_HOST", "").strip() or "127.0.0.1",
            mqtt_username=env.get("TELEMETRY_MQTT_USERNAME", "").strip() or "device",
            mqtt_password=_mqtt_password(env),
            public_health_details=_choice(env, "TELEMETRY_PUBLIC_HEALTH_DETAILS", "false", ("true", "false")) == "true",
            line_protocol_device_tags=_names(env, "TELEMETRY_LINE_PROTOCOL_DEVICE_TAGS", ("device_id", "host")),
            line_protocol_dots=_choice(env, "TELEMETRY_LINE_PROTOCOL_DOTS", "refuse", ("refuse", "underscore")),
            # --- gateway overload and headroom ---
            max_ingest_backlog_s=_number(env, "TELEMETRY_MAX_INGEST_BACKLOG", 10.0, float, 0.0, 86_400.0),
            backlog_check_s=_number(env, "TELEMETRY_BACKLOG_CHECK_INTERVAL", 0.5, float, 0.05, 60.0),
            statement_timeout_s=_number(env, "TELEMETRY_STATEMENT_TIMEOUT", 15.0, float, 0.1, 3600.0),
            heavy_query_concurrency=_number(env, "TELEMETRY_HEAVY_QUERY_CONCURRENCY", 0, int, 0, 500),
            heavy_query_wait_s=_number(env, "TELEMETRY_HEAVY_QUERY_WAIT", 10.0, float, 0.0, 600.0),
            gateway_processes=_number(env, "TELEMETRY_GATEWAY_PROCESSES", 0, int, 0, 256),
            gateway_reuse_port=_flag(env, "TELEMETRY_GATEWAY_REUSE_PORT"),
            retention_default_days=_number(env, "TELEMETRY_RETENTION_DEFAULT_DAYS", 90, int, 1, 3650),
            rollup_retention_days=_number(env, "TELEMETRY_ROLLUP_RETENTION_DAYS", 730, int, 1, 3650),
            retention_interval_s=_number(env, "TELEMETRY_RETENTION_INTERVAL", 3600, int, 0, 7 * 86_400),
            retention_chunk_rows=_number(env, "TELEMETRY_RETENTION_CHUNK", 5000, int, 10, 1_000_000),
            sketch_compaction_interval_s=_number(env, "TELEMETRY_SKETCH_COMPACTION_INTERVAL", 30.0, float, 0.05, 3600),
            # --- reads from a streaming replica ---
            database_read_url=_url(env, "DATABASE_READ_URL", ("postgresql://", "postgres://")),
            # --- the gateway's latest-value cache ---
            latest_cache_size=_number(env, "TELEMETRY_LATEST_CACHE_SIZE", 100_000, int, 0, 10**8),
            latest_cache_ttl_s=_number(env, "TELEMETRY_LATEST_CACHE_TTL", 60.0, float, 0.1, 86_400.0),
            latest_prefill_interval_s=_number(env, "TELEMETRY_LATEST_PREFILL_INTERVAL", 0.5, float, 0.0, 3600.0),
            query_cache_size=_number(env, "TELEMETRY_QUERY_CACHE_SIZE", 10_000, int, 0, 10**7),
            query_cache_ttl_s=_number(env, "TELEMETRY_QUERY_CACHE_TTL", 30.0, float, 0.1, 86_400.0),
            query_batch_max=_number(env, "TELEMETRY_QUERY_BATCH", 32, int, 0, 1000),
            fast_reads=_flag(env, "TELEMETRY_FAST_READS", default=True),
            fast_ingest=_flag(env, "TELEMETRY_FAST_INGEST", default=True),
        )

    def require_signing_key(self) -> bytes:
        """The POINTS signing key, or explain that the gateway and the workers need the same one."""
        if len(self.signing_key) < _MIN_SIGNING_KEY:
            raise ConfigurationError(
                f"TELEMETRY_SIGNING_KEY must be set to the same secret of at least {_MIN_SIGNING_KEY} characters "
                "in the gateway and every worker (`telemetry run` makes one per data directory)"
            )
        return self.signing_key.encode()

    def require_servers(self) -> tuple[str, str]:
        """Return (nats_url, database_url), or explain which is missing."""
        missing = [n for n, v in (("NATS_URL", self.nats_url), ("DATABASE_URL", self.database_url)) if not v]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} must be set for this command (or use `telemetry run`, "
                "which starts embedded servers)"
            )
        assert self.nats_url is not None
        assert self.database_url is not None
        return self.nats_url, self.database_url
