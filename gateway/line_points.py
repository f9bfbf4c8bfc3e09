"""Parsed line-protocol points → this service's points (JSON, as the batch API receives them), per device.

Naming, chosen to match what a Telegraf user already sees in Telegraf's Prometheus output: field ``f`` of
measurement ``m`` is the metric ``m_f`` (``cpu usage_idle=…`` → ``cpu_usage_idle``), and a field called
``value`` is the measurement alone (``temperature value=21`` → ``temperature``). ``m.f`` is impossible: a
metric name is subject-safe (A-Z a-z 0-9 _ - :), and a name outside that set is refused with its line number
(never silently rewritten, so two measurements can never fold into one metric). The device is the first tag
of ``device_tags`` the line has (default ``device_id``, then ``host``); that tag is not repeated among the
point's tags, every other tag is kept.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from gateway.line_protocol import LineError, LinePoint

# Nanoseconds per unit of each precision name InfluxDB 1.x (n, u, ms, s, m, h) or 2.x (ns, us, ms, s) accepts.
PRECISIONS: dict[str, int] = {
    "ns": 1, "n": 1, "us": 1_000, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()


@dataclass
class DevicePoints:
    """One device's points as raw JSON (to validate and publish as the batch API does), with their lines."""

    raws: list[msgspec.Raw] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


def metric_name(measurement: str, field_key: str) -> str:
    """The metric a field is stored as (see the module docstring)."""
    return measurement if field_key == "value" else f"{measurement}_{field_key}"


def instant(timestamp_ns: int) -> datetime:
    """A nanosecond Unix timestamp as a UTC datetime (to the microsecond, as points are stored)."""
    return _EPOCH + timedelta(microseconds=timestamp_ns // 1_000)


def to_device_points(
    parsed: list[tuple[int, LinePoint]],
    device_tags: tuple[str, ...],
    precision_ns: int,
    now_ns: int,
    dots_to_underscores: bool = False,
) -> tuple[dict[str, DevicePoints], list[LineError]]:
    """Group every field of every line by device, as JSON points; lines without a device tag are errors.

    ``now_ns`` is the time of lines without a timestamp: one instant per request, as InfluxDB does.
    ``dots_to_underscores`` (the operator's opt-in, TELEMETRY_LINE_PROTOCOL_DOTS=underscore) writes the dots
    of device ids and metric names as underscores: host names such as ``web.example.com`` and measurements
    such as ``disk.io`` are then accepted, at the price that ``a.b`` and ``a_b`` become one name.
    """
    devices: dict[str, DevicePoints] = {}
    errors: list[LineError] = []
    for number, point in parsed:
        used = next((t for t in device_tags if t in point.tags), None)
        if used is None:
            errors.append(LineError(number, f"no device tag: the line needs one of the tags {', '.join(device_tags)}"))
            continue
        try:
            ts = now_ns if point.timestamp is None else point.timestamp * precision_ns
            when = instant(ts)
        except OverflowError:
            errors.append(LineError(number, f"timestamp {point.timestamp} is out of range"))
            continue
        tags = {k: v for k, v in point.tags.items() if k != used}
        device = point.tags[used].replace(".", "_") if dots_to_underscores else point.tags[used]
        target = devices.setdefault(device, DevicePoints())
        for key, value in point.fields.items():
            name = metric_name(point.measurement, key)
            if dots_to_underscores:
                name = name.replace(".", "_")
            body: dict[str, object] = {
                "timestamp": when,
                "metric_name": name,
                "value": value if isinstance(value, bool | str | float) else int(value),
            }
            if tags:
                body["tags"] = tags
            target.raws.append(msgspec.Raw(_encoder.encode(body)))
            target.lines.append(number)
            target.metrics.append(name)
    return devices, errors
