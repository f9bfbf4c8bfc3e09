"""Points → row tuples for the points table, de-duplicated so the later write wins (pure)."""

from collections.abc import Iterable
from datetime import UTC, date
from typing import Any

from psycopg.types.json import Json, Jsonb

from telemetry_core.value_columns import to_columns
from telemetry_schemas.values import Point, ValueType

COLUMNS = (
    "device_id", "metric_name", "time", "value_type", "value_num", "value_text", "value_bool",
    "value_json", "unit", "tags", "metadata", "src_seq",
)  # fmt: skip
COPY_TYPES = ["text", "text", "timestamptz", "int2", "float8", "text", "bool", "json", "text", "jsonb", "json", "int8"]

Row = tuple[Any, ...]
_FLOAT, _INTEGER = int(ValueType.FLOAT), int(ValueType.INTEGER)
Key = tuple[str, str, Any]


def point_row(device_id: str, point: Point, seq: int) -> Row:
    """One row in COLUMNS order."""
    value = point.value
    kind_of = type(value)
    # Numbers are nearly every point: their columns without to_columns()'s classification (bool is not int here).
    if kind_of is float or kind_of is int:
        return (
            device_id, point.metric_name, point.timestamp, _FLOAT if kind_of is float else _INTEGER, float(value),  # type: ignore[arg-type]
            None, None, None, point.unit, Jsonb(point.tags) if point.tags else None,
            Json(point.metadata) if point.metadata else None, seq,
        )  # fmt: skip
    kind, num, text, flag, obj = to_columns(value)
    return (
        device_id,
        point.metric_name,
        point.timestamp,
        int(kind),
        num,
        text,
        flag,
        None if obj is None else Json(obj),
        point.unit,
        Jsonb(point.tags) if point.tags else None,
        Json(point.metadata) if point.metadata else None,
        seq,
    )


class RowSet:
    """Rows keyed by (device, metric, time): adding a key again replaces it (E1-US4, later wins).

    PostgreSQL's ON CONFLICT DO UPDATE refuses a statement that holds one key twice, so the
    batch is de-duplicated here first, in stream order.
    """

    def __init__(self) -> None:
        self._rows: dict[Key, Row] = {}
        self._days: set[date] = set()

    def add(self, device_id: str, point: Point, seq: int) -> None:
        """Add the row of this point, replacing one from the same or an earlier stream message."""
        self.add_points(device_id, (point,), seq)

    def add_points(self, device_id: str, points: Iterable[Point], seq: int) -> None:
        """``add`` for every point of one message, in order (one loop: this runs for every point stored)."""
        rows, days, get = self._rows, self._days, self._rows.get
        for point in points:
            ts = point.timestamp
            key = (device_id, point.metric_name, ts)
            held = get(key)
            if held is not None and held[-1] > seq:
                continue  # a redelivered older message must not override a newer one in the same batch
            rows[key] = point_row(device_id, point, seq)
            days.add((ts if ts.tzinfo is UTC else ts.astimezone(UTC)).date())

    def rows(self) -> list[Row]:
        """The de-duplicated rows."""
        return list(self._rows.values())

    def days(self) -> set[date]:
        """UTC days the rows fall on (their partitions must exist)."""
        return self._days

    def __len__(self) -> int:
        return len(self._rows)
