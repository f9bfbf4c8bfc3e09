"""Read model: dead letters per minute and worker (the service stats' error_rate), from the DLQ stream."""

from datetime import UTC
from typing import Any

from psycopg import AsyncCursor

from telemetry_core.topology import DEAD_LETTER_STATS_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import dead_letter_decoder
from telemetry_schemas.dead_letter import DeadLetter

NAME = "dead_letter_stats"
SPEC: ConsumerSpec = DEAD_LETTER_STATS_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.stats_dead_letter_minute",)

_ADD = """
INSERT INTO telemetry.stats_dead_letter_minute AS d (minute, worker, letters) VALUES (%s, %s, %s)
ON CONFLICT (minute, worker) DO UPDATE SET letters = d.letters + EXCLUDED.letters
"""


def decode(data: bytes) -> DeadLetter:
    """Decode a dead letter."""
    return dead_letter_decoder.decode(data)


async def apply(cur: AsyncCursor[Any], messages: list[DeadLetter]) -> None:
    """Count the letters per (minute they failed in, worker)."""
    counts: dict[tuple[Any, str], int] = {}
    for letter in messages:
        key = (letter.failed_at.astimezone(UTC).replace(second=0, microsecond=0), letter.worker)
        counts[key] = counts.get(key, 0) + 1
    await cur.executemany(_ADD, [(*k, v) for k, v in sorted(counts.items())])
