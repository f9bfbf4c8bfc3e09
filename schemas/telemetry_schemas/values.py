"""A telemetry point and its typed value, plus the checks msgspec cannot express in a type."""

import math
import re
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import msgspec

from telemetry_schemas.fields import (
    SUBJECT_SAFE,
    Metadata,
    MetricName,
    PointMetricName,
    PointTimestamp,
    Tags,
    TextValue,
    Unit,
)
from telemetry_schemas.text import depth_problem, json_problem

# JSON numbers, text, booleans, objects and arrays (FR: "numeric, string, boolean, and JSON value types"; any JSON
# document but null). A geolocation is an object {lat, lon, alt?}; other objects and arrays are stored as JSON.
Value = int | float | bool | TextValue | dict[str, Any] | list[Any]

# Timestamps outside this range are almost always a device clock bug (epoch 0, year 9999);
# rejecting them keeps the time-partitioned table from growing partitions for nonsense.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# Integers are stored as double precision; beyond 2**53 they would silently change.
MAX_SAFE_INT = 2**53


class ValueType(IntEnum):
    """How a value is stored; kept in the points table so it reads back as it was written."""

    FLOAT = 0
    INTEGER = 1
    STRING = 2
    BOOLEAN = 3
    JSON = 4
    GEOLOCATION = 5


class Point(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One measurement of one metric at one instant (the E1-US1 request body)."""

    timestamp: PointTimestamp
    metric_name: PointMetricName
    value: Value
    unit: Unit | None = None
    tags: Tags = {}
    metadata: Metadata = {}


GEO_KEYS = frozenset({"lat", "lon"})
GEO_KEYS_ALT = frozenset({"lat", "lon", "alt"})


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def value_type(value: object) -> ValueType:
    """Classify a decoded value; a dict shaped exactly {lat, lon[, alt]} is a geolocation."""
    if isinstance(value, bool):
        return ValueType.BOOLEAN
    if isinstance(value, int):
        return ValueType.INTEGER
    if isinstance(value, float):
        return ValueType.FLOAT
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, dict) and set(value) in (GEO_KEYS, GEO_KEYS_ALT):
        return ValueType.GEOLOCATION
    return ValueType.JSON


def point_text_problem(point: Point) -> tuple[str, str] | None:
    """(field, reason) for a NUL anywhere in the point's text (unit, tags, a text or object value, metadata)."""
    for field, value in (("unit", point.unit), ("tags", point.tags), ("value", point.value),
                         ("metadata", point.metadata)):  # fmt: skip
        found = json_problem(value, field)
        if found is not None:
            return found
    return None


_SUBJECT_SAFE = re.compile(SUBJECT_SAFE)
# Metric names found valid: a device sends the same few names in every batch. Bounded: emptied when full.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 100_000


def metric_name_problem(name: str) -> tuple[str, str] | None:
    """(field, reason) when ``name`` breaks MetricName's pattern, in msgspec's words; None when it is valid."""
    if name in _VALID_NAMES:
        return None
    if _SUBJECT_SAFE.search(name) is None:  # search, as msgspec runs a pattern
        try:
            msgspec.convert(name, MetricName)
        except msgspec.ValidationError as exc:  # the message msgspec gave when it ran the pattern itself
            return "metric_name", str(exc)
        return "metric_name", f"Expected `str` matching regex {SUBJECT_SAFE!r}"  # unreachable: same pattern
    if len(_VALID_NAMES) >= _VALID_NAMES_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(name)
    return None


def point_problem(point: Point) -> tuple[str, str] | None:
    """Return (field, reason) for what a type cannot check, or None when the point is valid."""
    found = metric_name_problem(point.metric_name)
    if found is not None:
        return found
    if not EARLIEST <= point.timestamp < LATEST:
        return "timestamp", f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
    value = point.value
    if point.metadata:
        found = depth_problem(point.metadata, "metadata")
        if found is not None:
            return found
    # Plain numbers first, by exact type (most points; bool is not int here): no classification needed.
    if type(value) is float:
        return None if math.isfinite(value) else ("value", "must be a finite number")
    if type(value) is int:
        return (
            None
            if abs(value) <= MAX_SAFE_INT
            else ("value", f"integer magnitude must not exceed 2**53 ({MAX_SAFE_INT})")
        )
    kind = value_type(value)
    if kind is ValueType.INTEGER and abs(value) > MAX_SAFE_INT:  # type: ignore[arg-type]
        return "value", f"integer magnitude must not exceed 2**53 ({MAX_SAFE_INT})"
    if kind is ValueType.FLOAT and not math.isfinite(value):  # type: ignore[arg-type]
        return "value", "must be a finite number"
    if kind is ValueType.JSON:
        return depth_problem(value, "value")  # type: ignore[arg-type]
    if kind is ValueType.GEOLOCATION:
        assert isinstance(value, dict)
        if not all(_is_number(v) for v in value.values()):
            return "value", "geolocation lat, lon and alt must be numbers"
        if not -90 <= value["lat"] <= 90:
            return "value.lat", "latitude must be between -90 and 90"
        if not -180 <= value["lon"] <= 180:
            return "value.lon", "longitude must be between -180 and 180"
    return None
