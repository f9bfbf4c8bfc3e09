"""What a batch of fresh points adds to its minute and hour rollups, computed in the worker before COPY (pure).

When every point of a batch is new (the common case: nothing stored under its keys yet), the rows it adds to
``rollup_minute`` / ``rollup_hour`` are known before PostgreSQL sees them: per (device, metric, UTC minute) and
per (device, metric, UTC hour) the count, sum, min, max and DDSketch counts of its numeric points. PostgreSQL
grouping the same points by (minute, sketch key) and again by (hour, sketch key) cost it about as much CPU as
inserting them (docs/benchmarks-ingest-copy.md); here it only merges one row per bucket. A batch that touches an
existing key takes the upsert path of migration 0018 instead, which works these out in SQL from what it wrote.
"""

import math
from datetime import UTC, datetime, timedelta
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)


def _key_name(code: int) -> str:
    """A sketch key from its code (see fresh_batch): the text telemetry.dd_key gives."""
    if code == 0:
        return "z"
    return f"{'p' if code % 4 == 1 else 'n'}{code // 4}"


def _hour_of(minutes: dict[int, int], into: dict[int, int]) -> None:
    for code, n in minutes.items():
        into[code] = into.get(code, 0) + n


def fresh_batch(rows: list[Row]) -> tuple[list[Row], Inserted]:
    """For a batch whose rows are all fresh: its rollup stage rows (STAGE_COLUMNS, minutes then hours) and counts.

    The counts are how many rows each message inserted per metric and UTC hour (every row: all are inserted).
    ``rows`` are in ingest_worker.rows.COLUMNS order; only numeric rows roll up (as in SQL). One pass over the
    rows, with integers for buckets and sketch keys (a datetime or a string per point cost the worker more than
    PostgreSQL saved): minute = whole minutes since the epoch (exact: timedelta floor division, any offset);
    sketch key = ceil(ln|v| / ln 1.02) * 4 + 1 (positive) or + 2 (negative), 0 for |v| < 1e-9 ("z").
    """
    minutes: dict[tuple[str, str, int], list[Any]] = {}
    counts: dict[tuple[int, str, int], int] = {}
    log, ceil, gamma = math.log, math.ceil, _LN_GAMMA
    for row in rows:
        minute = (row[2] - _EPOCH) // _MINUTE
        at = (row[11], row[1], minute // 60)
        counts[at] = counts.get(at, 0) + 1
        if row[3] > 1:  # not FLOAT (0) or INTEGER (1): no rollup
            continue
        v = row[4]
        if abs(v) < 1e-9:
            code = 0
        elif v > 0:
            code = ceil(log(v) / gamma) * 4 + 1
        else:
            code = ceil(log(-v) / gamma) * 4 + 2
        key = (row[0], row[1], minute)
        b = minutes.get(key)
        if b is None:
            minutes[key] = [1, v, v, v, {code: 1}]
            continue
        b[0] += 1
        b[1] += v
        if v < b[2]:
            b[2] = v
        if v > b[3]:
            b[3] = v
        sketch = b[4]
        sketch[code] = sketch.get(code, 0) + 1
    stage: list[Row] = []
    hours: dict[tuple[str, str, int], list[Any]] = {}
    for (device, metric, minute), (n, total, lo, hi, sketch) in minutes.items():
        named = {_key_name(c): k for c, k in sketch.items()}
        stage.append(("m", device, metric, _EPOCH + minute * _MINUTE, n, total, lo, hi, Jsonb(named)))
        at = (device, metric, minute // 60)
        h = hours.get(at)
        if h is None:
            hours[at] = [n, total, lo, hi, dict(sketch)]
            continue
        h[0] += n
        h[1] += total
        h[2] = min(h[2], lo)
        h[3] = max(h[3], hi)
        _hour_of(sketch, h[4])
    for (device, metric, hour), (n, total, lo, hi, sketch) in hours.items():
        named = {_key_name(c): k for c, k in sketch.items()}
        stage.append(("h", device, metric, _EPOCH + hour * 60 * _MINUTE, n, total, lo, hi, Jsonb(named)))
    inserted: Inserted = {}
    for (seq, metric, hour), n in counts.items():
        inserted.setdefault((seq, metric), []).append((_EPOCH + hour * 60 * _MINUTE, n))
    return stage, inserted


def with_first_seq(rows: list[Row]) -> list[tuple[Any, ...]]:
    """Rows for a COPY straight into telemetry.points: key order, first_seq = src_seq (inserted by this message).

    Key order is the lock order every ingest transaction follows (migrations 0013, 0018): two transactions
    writing overlapping keys wait on one another in the same order instead of deadlocking.
    """
    ordered = sorted(rows, key=lambda r: (r[0], r[1], r[2]))  # aware datetimes compare as instants
    return [(*r, r[11]) for r in ordered]
