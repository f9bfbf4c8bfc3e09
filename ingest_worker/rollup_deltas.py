"""What a batch of fresh points adds to its minute and hour rollups, computed in the worker before COPY (pure).

When every point of a batch is new (the common case: nothing stored under its keys yet), the rows it adds to
``rollup_minute`` / ``rollup_hour`` are known before PostgreSQL sees them: per (device, metric, UTC minute) and
per (device, metric, UTC hour) the count, sum, min, max and DDSketch counts of its numeric points. PostgreSQL
grouping the same points by (minute, sketch key) and again by (hour, sketch key) cost it about as much CPU as
inserting them (docs/benchmarks-ingest-copy.md); here it only merges one row per bucket. A batch that touches an
existing key takes the upsert path of migration 0018 instead, which works these out in SQL from what it wrote.
"""

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from ingest_worker.rows import Row

# PostgreSQL's divisor, not math.log(1.02): in `ceil(ln(v) / ln(1.02))` the literal 1.02 is numeric, so the server
# takes the logarithm of exactly 1.02 (0.019802627296179713…) and rounds that to a double, while math.log(1.02)
# is the logarithm of the double nearest 1.02, one ulp larger. With it, v = 1.02 came out "p1" here and "p2" there.
_LN_GAMMA = float(Decimal("0.019802627296179713"))
_NUMERIC = (0, 1)  # ValueType.FLOAT, ValueType.INTEGER: what the rollups hold
STAGE_COLUMNS = ("grain", "device_id", "metric_name", "bucket", "count", "sum", "min", "max", "sketch")
STAGE_TYPES = ["text", "text", "text", "timestamptz", "int8", "float8", "float8", "float8", "jsonb"]

# (POINTS sequence, metric) -> [(UTC hour, points that message inserted in that hour)], as writer.Inserted
Inserted = dict[tuple[int, str], list[tuple[datetime, int]]]


def dd_key(v: float) -> str:
    """telemetry.dd_key (migration 0013) in Python: the sketch bucket of a value, relative accuracy 2 %.

    The same IEEE operations as PostgreSQL's ``ceil(ln(v) / ln(1.02))`` with the server's divisor, so the same
    key for every value (tests/integration/test_rollup_deltas.py compares them on the server).
    """
    if abs(v) < 1e-9:
        return "z"
    if v > 0:
        return f"p{math.ceil(math.log(v) / _LN_GAMMA)}"
    return f"n{math.ceil(math.log(-v) / _LN_GAMMA)}"


class _Bucket:
    __slots__ = ("count", "hi", "lo", "sketch", "total")

    def __init__(self, v: float, key: str) -> None:
        self.count, self.total, self.lo, self.hi = 1, v, v, v
        self.sketch = {key: 1}

    def add(self, v: float, key: str) -> None:
        self.count += 1
        self.total += v
        if v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v
        self.sketch[key] = self.sketch.get(key, 0) + 1

    def merge(self, other: "_Bucket") -> None:
        self.count += other.count
        self.total += other.total
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)
        sketch = self.sketch
        for key, n in other.sketch.items():
            sketch[key] = sketch.get(key, 0) + n


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is UTC else t.astimezone(UTC)


def rollup_rows(rows: list[Row]) -> list[Row]:
    """The stage rows (STAGE_COLUMNS) of a batch whose rows are all fresh: minutes first, then hours.

    ``rows`` are in ingest_worker.rows.COLUMNS order. Each sketch and sum of a bucket is that of its points in
    the order given; rows of other value types add nothing (as in SQL).
    """
    minutes: dict[tuple[str, str, datetime], _Bucket] = {}
    get = minutes.get
    for row in rows:
        if row[3] not in _NUMERIC:
            continue
        v = row[4]
        key = dd_key(v)
        at = (row[0], row[1], _utc(row[2]).replace(second=0, microsecond=0))
        bucket = get(at)
        if bucket is None:
            minutes[at] = _Bucket(v, key)
        else:
            bucket.add(v, key)
    hours: dict[tuple[str, str, datetime], _Bucket] = {}
    out: list[Row] = []
    for (device, metric, minute), b in minutes.items():
        out.append(("m", device, metric, minute, b.count, b.total, b.lo, b.hi, Jsonb(b.sketch)))
        at = (device, metric, minute.replace(minute=0))
        hour = hours.get(at)
        if hour is None:
            hours[at] = hour = _Bucket.__new__(_Bucket)
            hour.count, hour.total, hour.lo, hour.hi, hour.sketch = 0, 0.0, math.inf, -math.inf, {}
        hour.merge(b)
    out += [("h", d, m, h, b.count, b.total, b.lo, b.hi, Jsonb(b.sketch)) for (d, m, h), b in hours.items()]
    return out


def inserted_counts(rows: list[Row]) -> Inserted:
    """How many rows each message inserted per metric and UTC hour, when every row of the batch was inserted."""
    counts: dict[tuple[int, str, datetime], int] = {}
    for row in rows:
        at = (row[11], row[1], _utc(row[2]).replace(minute=0, second=0, microsecond=0))
        counts[at] = counts.get(at, 0) + 1
    out: Inserted = {}
    for (seq, metric, hour), n in counts.items():
        out.setdefault((seq, metric), []).append((hour, n))
    return out


def with_first_seq(rows: list[Row]) -> list[tuple[Any, ...]]:
    """Rows for a COPY straight into telemetry.points: key order, first_seq = src_seq (inserted by this message).

    Key order is the lock order every ingest transaction follows (migrations 0013, 0018): two transactions
    writing overlapping keys wait on one another in the same order instead of deadlocking.
    """
    ordered = sorted(rows, key=lambda r: (r[0], r[1], r[2]))  # aware datetimes compare as instants
    return [(*r, r[11]) for r in ordered]
