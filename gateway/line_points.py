"""A line-protocol body → this service's points (JSON, as the batch API receives them), per device.

Naming, chosen to match what a Telegraf user already sees in Telegraf's Prometheus output: field ``f`` of
measurement ``m`` is the metric ``m_f`` (``cpu usage_idle=…`` → ``cpu_usage_idle``), and a field called
``value`` is the measurement alone (``temperature value=21`` → ``temperature``). ``m.f`` is impossible: a
metric name is subject-safe (A-Z a-z 0-9 _ - :), and a name outside that set is refused with its line number
(never silently rewritten, so two measurements can never fold into one metric). The device is the first tag
of ``device_tags`` the line has (default ``device_id``, then ``host``); that tag is not repeated among the
point's tags, every other tag is kept.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from gateway.line_protocol import (
    FLOAT,
    FieldValue,
    LineError,
    LineSyntaxError,
    fields,
    lines,
    sections,
    series_key,
    timestamp,
)

# Nanoseconds per unit of each precision name InfluxDB 1.x (n, u, ms, s, m, h) or 2.x (ns, us, ms, s) accepts.
PRECISIONS: dict[str, int] = {
    "ns": 1, "n": 1, "us": 1_000, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()
_encode = _encoder.encode


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


@dataclass
class Translation:
    """A body's points per device, how many lines held a point, and the lines (or fields) refused so far."""

    lines: int = 0
    devices: dict[str, DevicePoints] = field(default_factory=dict)
    refused: list[LineError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Series:
    """What every line of one series key turns into: its device, and the JSON its points share."""

    measurement: str
    device: str | None  # None: the key has no device tag
    tags_json: bytes  # b',"tags":{...}' or b"" (the device tag is not among them)
    names: dict[str, tuple[str, bytes]]  # field key -> the metric name, and as JSON (filled as fields are met)


@dataclass(frozen=True, slots=True)
class _Instant:
    """A timestamp's text, read: its JSON, or why it is refused (a syntax error comes before the device check)."""

    json: bytes | None
    syntax_error: str | None = None
    range_error: str | None = None


def translate(
    text: str, device_tags: tuple[str, ...], precision_ns: int, now_ns: int, dots_to_underscores: bool = False
) -> Translation:
    """Every field of every line as a JSON point, grouped by device; refused lines by number, in line order.

    The lines of a body repeat a few series keys and timestamps: each distinct key (measurement and tags) and
    each distinct timestamp is read and encoded once per body, the fields of every line always. ``now_ns`` is
    the time of lines without a timestamp: one instant per request, as InfluxDB does. ``dots_to_underscores``
    (the operator's opt-in, TELEMETRY_LINE_PROTOCOL_DOTS=underscore) writes the dots of device ids and metric
    names as underscores: host names such as ``web.example.com`` and measurements such as ``disk.io`` are then
    accepted, at the price that ``a.b`` and ``a_b`` become one name. The same points as ``parse`` followed by
    one point per field (tests/unit/test_line_points.py holds that reading and compares).
    """
    out = Translation()
    series: dict[str, _Series | str] = {}  # key text -> the series, or why the key is refused
    instants: dict[str, _Instant] = {}
    refused, devices = out.refused, out.devices
    for number, line in lines(text):
        out.lines += 1
        try:
            # A plain line (no escape, no quote, single spaces, one float field) is read without the general parser.
            plain = "\\" not in line and '"' not in line
            parts = line.split(" ") if plain else ()
            if len(parts) == 3 and "" not in parts:
                key, field_text, stamp = parts
            else:
                key, field_text, stamp = sections(line)
            found = series.get(key)
            if found is None:
                found = series[key] = _series(key, device_tags, dots_to_underscores)
            if isinstance(found, str):
                raise LineSyntaxError(found)
            k, _, v = field_text.partition("=") if plain and "," not in field_text else ("", "", "")
            values: Iterable[tuple[str, FieldValue]] = (
                ((k, float(v)),) if k and FLOAT.fullmatch(v) else fields(field_text).items()
            )
        except LineSyntaxError as exc:
            refused.append(LineError(number, str(exc)))
            continue
        when = instants.get(stamp)
        if when is None:
            when = instants[stamp] = _instant(stamp, precision_ns, now_ns)
        if when.syntax_error is not None:
            refused.append(LineError(number, when.syntax_error))
        elif found.device is None:
            refused.append(LineError(number, f"no device tag: the line needs one of the tags {', '.join(device_tags)}"))
        elif when.json is None:
            refused.append(LineError(number, when.range_error or "timestamp out of range"))
        else:  # the points of the line (inline: this runs for every line of every body)
            target = devices.get(found.device)
            if target is None:
                target = devices[found.device] = DevicePoints()
            names, tags = found.names, found.tags_json
            for key, value in values:
                named = names.get(key) or _name(found, key, dots_to_underscores)
                encoded = _encode(value if type(value) in _AS_IS else int(value))
                target.raws.append(msgspec.Raw(_POINT % (when.json, named[1], encoded, tags)))
                target.lines.append(number)
                target.metrics.append(named[0])
    return out


def _name(found: _Series, key: str, dots: bool) -> tuple[str, bytes]:
    """The metric of field ``key`` of the series, and its JSON (kept on the series)."""
    metric = metric_name(found.measurement, key)
    metric = metric.replace(".", "_") if dots else metric
    named = found.names[key] = (metric, _encoder.encode(metric))
    return named


_AS_IS = frozenset({bool, str, float, int})  # Unsigned (an int subclass) is written as a plain int
# The keys in the order msgspec writes a point's dict; "tags" (with its comma) only when the line has tags.
_POINT = b'{"timestamp":%b,"metric_name":%b,"value":%b%b}'


def _series(key: str, device_tags: tuple[str, ...], dots: bool) -> _Series | str:
    try:
        measurement, tags = series_key(key)
    except LineSyntaxError as exc:
        return str(exc)
    used = next((t for t in device_tags if t in tags), None)
    if used is None:
        return _Series(measurement, None, b"", {})
    device = tags.pop(used)
    return _Series(
        measurement,
        device.replace(".", "_") if dots else device,
        b',"tags":' + _encoder.encode(tags) if tags else b"",
        {},
    )


def _instant(stamp: str, precision_ns: int, now_ns: int) -> _Instant:
    try:
        value = timestamp(stamp)
    except LineSyntaxError as exc:
        return _Instant(None, syntax_error=str(exc))
    try:
        return _Instant(_encoder.encode(instant(now_ns if value is None else value * precision_ns)))
    except OverflowError:
        return _Instant(None, range_error=f"timestamp {value} is out of range")
