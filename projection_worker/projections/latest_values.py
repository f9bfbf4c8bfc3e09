"""Read model: the newest point per (device, metric) — answers /latest and a device's metric list."""

from itertools import chain
from typing import Any

from psycopg import AsyncCursor
from psycopg.types.json import Json, Jsonb

from telemetry_core.topology import LATEST_PROJECTION, ConsumerSpec
from telemetry_core.value_columns import to_columns
from telemetry_schemas.codecs import decode_notices
from telemetry_schemas.notices import PointsStored

NAME = "latest_values"
SPEC: ConsumerSpec = LATEST_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.latest_values",)

# A newer point replaces the stored one; for the same instant, the later write in POINTS wins.
_UPSERT = """
INSERT INTO telemetry.latest_values AS l
    (device_id, metric_name, time, value_type, value_num, value_text, value_bool, value_json, unit, tags, metadata,
     src_seq)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (device_id, metric_name) DO UPDATE SET
    time = EXCLUDED.time, value_type = EXCLUDED.value_type, value_num = EXCLUDED.value_num,
    value_text = EXCLUDED.value_text, value_bool = EXCLUDED.value_bool, value_json = EXCLUDED.value_json,
    unit = EXCLUDED.unit, tags = EXCLUDED.tags, metadata = EXCLUDED.metadata, src_seq = EXCLUDED.src_seq,
    updated_at = now()
WHERE (EXCLUDED.time, EXCLUDED.src_seq) >= (l.time, l.src_seq)
"""


def decode(data: bytes) -> list[PointsStored]:
    """The notices of one NOTICES message (usually one ingest transaction's)."""
    return decode_notices(data)


async def apply(cur: AsyncCursor[Any], messages: list[list[PointsStored]]) -> None:
    """Upsert the newest point of each (device, metric) the notices mention, in stream order."""
    params = []
    for notice in chain.from_iterable(messages):
        for metric in notice.metrics:
            p = metric.latest
            kind, num, text, flag, obj = to_columns(p.value)
            params.append(
                (
                    notice.device_id, p.metric_name, p.timestamp, int(kind), num, text, flag,
                    None if obj is None else Json(obj), p.unit, Jsonb(p.tags), Json(p.metadata),
                    notice.points_seq,
                )
            )  # fmt: skip
    # Rows of one statement run in order, so a later notice's point overrides an earlier one's.
    await cur.executemany(_UPSERT, params)
