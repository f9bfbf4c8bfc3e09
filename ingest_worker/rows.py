"""Points → row tuples for the points table; where a key repeats, the later write wins (pure).

A batch is copied as it came: a key twice in one batch is rare (a message redelivered or sent again while the
first is in the same fetch), and keying every row by (device, metric, time) to find it was the ingest worker's
single largest cost after decoding (hashing an aware datetime: 11-15 % of its CPU in py-spy). PostgreSQL finds
it instead: its ON CONFLICT refuses a statement holding one key twice, and the writer then copies the batch
again through ``latest_rows`` (ingest_worker/writer.py).
"""

from collections.abc import Iterable
from datetime import UTC, date
from typing import Any

import msgspec
from psycopg.types.json import Json

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
_encode = msgspec.json.Encoder().encode


class DumpedJsonb(bytes):
    """A jsonb value already in COPY's binary form (version byte 1, then the JSON text): see writer.JsonbCopyDumper.

    A device's points carry the same tags, point after point: a RowSet encodes them once per run of equal tags,
    where dumping a dict per row (Jsonb wrapper, msgspec encode, prefix) was ~9 % of the ingest worker's CPU.
    """

    __slots__ = ()

    @classmethod
    def of(cls, value: dict[str, Any]) -> "DumpedJsonb":
        """The binary jsonb of ``value``."""
        return cls(b"\x01" + _encode(value))


def point_row(device_id: str, point: Point, seq: int, tags: DumpedJsonb | None = None) -> Row:
    """One row in COLUMNS order; ``tags``: the point's tags already dumped (None: dumped here, if any)."""
    if tags is None and point.tags:
        tags = DumpedJsonb.of(point.tags)
    value = point.value
    kind_of = type(value)
    # Numbers are nearly every point: their columns without to_columns()'s classification (bool is not int here).
    if kind_of is float or kind_of is int:
        return (
            device_id, point.metric_name, point.timestamp, _FLOAT if kind_of is float else _INTEGER, float(value),  # type: ignore[arg-type]
            None, None, None, point.unit, tags, Json(point.metadata) if point.metadata else None, seq,
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
        tags,
        Json(point.metadata) if point.metadata else None,
        seq,
    )


def latest_rows(rows: Iterable[Row]) -> list[Row]:
    """``rows`` with one row per key: the row of the latest stream message, and within one message the last one.

    A redelivered older message that comes after a newer one in the same batch does not override it.
    """
    kept: dict[Key, Row] = {}
    get = kept.get
    for row in rows:
        key = (row[0], row[1], row[2])
        held = get(key)
        if held is None or held[-1] <= row[-1]:
            kept[key] = row
    return list(kept.values())


class RowSet:
    """The rows of a batch, in stream order (keys may repeat: ``latest_rows`` or PostgreSQL resolves them)."""

    def __init__(self) -> None:
        self._rows: list[Row] = []
        self._days: set[date] = set()
        self._tags: dict[str, str] | None = None  # the last tags dumped, and their dumped form
        self._dumped: DumpedJsonb | None = None

    def add(self, device_id: str, point: Point, seq: int) -> None:
        """Add the row of this point."""
        self.add_points(device_id, (point,), seq)

    def add_points(self, device_id: str, points: Iterable[Point], seq: int) -> None:
        """``add`` for every point of one message, in order (one loop: this runs for every point stored)."""
        append, days = self._rows.append, self._days
        last_tags, dumped = self._tags, self._dumped
        last_day = None
        for point in points:
            tags = point.tags
            if not tags:
                row = point_row(device_id, point, seq, None)
            else:
                if tags is not last_tags and tags != last_tags:
                    last_tags, dumped = tags, DumpedJsonb.of(tags)
                row = point_row(device_id, point, seq, dumped)
            append(row)
            ts = point.timestamp
            day = (ts if ts.tzinfo is UTC else ts.astimezone(UTC)).date()
            if day != last_day:
                days.add(day)
                last_day = day
        self._tags, self._dumped = last_tags, dumped

    def rows(self) -> list[Row]:
        """The rows in stream order (a key may repeat)."""
        return self._rows

    def latest(self) -> list[Row]:
        """The rows, one per key (``latest_rows``)."""
        return latest_rows(self._rows)

    def days(self) -> set[date]:
        """UTC days the rows fall on (their partitions must exist)."""
        return self._days

    def __len__(self) -> int:
        return len(self._rows)
