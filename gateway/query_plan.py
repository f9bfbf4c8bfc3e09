"""Which source answers an aggregated query: raw points, minute rollups or hour rollups (pure)."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# DDSketch gamma 1.02 (see migration 0005_rollups.sql): quantiles within this relative error.
SKETCH_RELATIVE_ERROR = (1.02 - 1) / (1.02 + 1)
PERCENTILES = {"median": 0.5, "p95": 0.95, "p99": 0.99}


class Source(StrEnum):
    """Where the numbers come from; reported in the response."""

    RAW = "raw"
    MINUTE = "rollup_minute"
    HOUR = "rollup_hour"


@dataclass(frozen=True)
class Plan:
    """How to answer: the source and, for percentiles from sketches, their relative error."""

    source: Source
    relative_error: float | None


def _aligned(t: datetime, seconds: int) -> bool:
    return int(t.timestamp()) % seconds == 0 and t.microsecond == 0


def choose_source(start: datetime, end: datetime, interval: int, aggregation: str) -> Plan:
    """The coarsest source whose buckets tile the query's buckets exactly.

    Rollup buckets must nest inside query buckets: the interval a multiple of the rollup size and
    start/end on its boundaries. Sub-minute intervals or unaligned ranges read raw points.
    """
    for size, source in ((3600, Source.HOUR), (60, Source.MINUTE)):
        if interval % size == 0 and _aligned(start, size) and _aligned(end, size):
            error = SKETCH_RELATIVE_ERROR if aggregation in PERCENTILES else None
            return Plan(source, error)
    return Plan(Source.RAW, None)


def bucket_count(start: datetime, end: datetime, interval: int) -> int:
    """Buckets per series over [start, end)."""
    span = (end - start).total_seconds()
    return int(-(-span // interval))
