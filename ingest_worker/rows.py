"""Points → row tuples for the points table, de-duplicated so the later write wins (pure)."""

from datetime import UTC, date
from typing import Any

from psycopg.types.json import Json, Jsonb

from telemetry_core.value_columns import to_columns
from telemetry_schemas.values import Point

COLUMNS = (
    "device_id", "metric_name", "time", "value_type", "value_num", "value_text", "value_bool",
    "value_json", "unit", "tags", "metadata",
)  # fmt: skip
COPY_TYPES = ["text", "text", "timestamptz", "int2", "float8", "text", "bool", "json", "text", "jsonb", "json"]

Row = tuple[Any, ...]
Key = tuple[str, str, Any]


def point_row(device_id: str, point: Point) -> Row:
    """One row in COLUMNS order."""
    kind, num, text, flag, obj = to_columns(point.value)
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
    )


class RowSet:
    """Rows keyed by (device, metric, time): adding a key again replaces it (E1-US4, later wins).

    PostgreSQL's ON CONFLICT DO UPDATE refuses a statement that holds one key twice, so the
    batch is de-duplicated here first, in stream order.
    """

    def __init__(self) -> None:
        self._rows: dict[Key, Row] = {}

    def add(self, device_id: str, point: Point) -> None:
        """Add (or replace) the row of this point."""
        self._rows[(device_id, point.metric_name, point.timestamp)] = point_row(device_id, point)

    def rows(self) -> list[Row]:
        """The de-duplicated rows."""
        return list(self._rows.values())

    def days(self) -> set[date]:
        """UTC days the rows fall on (their partitions must exist)."""
        return {key[2].astimezone(UTC).date() for key in self._rows}

    def __len__(self) -> int:
        return len(self._rows)
