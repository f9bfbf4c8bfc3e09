"""One batch's rows → per-series chunks and their additive rollup rows (pure; the storage prototype's worker side).

A chunk holds the points of one (device, metric) that one batch wrote into one UTC hour, sorted by time. The
rollup rows are what telemetry.write_points_stage (0013) computes in SQL, computed here before COPY: per
(device, metric, minute) and per (device, metric, hour) count / sum / min / max and the DDSketch counts,
keyed exactly as telemetry.dd_key keys them.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

_LN_GAMMA = math.log(1.02)

Row = tuple[Any, ...]  # ingest_worker.rows.COLUMNS order: device, metric, time, value_type, value_num, ..., src_seq


def dd_key(v: float) -> str:
    """telemetry.dd_key (0013) in Python: sketch bucket of a value, relative accuracy 2 %."""
    if abs(v) < 1e-9:
        return "z"
    if v > 0:
        return f"p{math.ceil(math.log(v) / _LN_GAMMA)}"
    return f"n{math.ceil(math.log(-v) / _LN_GAMMA)}"


@dataclass
class _Agg:
    count: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    sketch: dict[str, int] = field(default_factory=dict)

    def add(self, v: float, key: str) -> None:
        self.count += 1
        self.total += v
        self.lo = min(self.lo, v)
        self.hi = max(self.hi, v)
        self.sketch[key] = self.sketch.get(key, 0) + 1


def _floor(t: datetime, minute: bool) -> datetime:
    return t.replace(second=0, microsecond=0) if minute else t.replace(minute=0, second=0, microsecond=0)


def build_chunks(rows: list[Row], with_rollups: bool) -> tuple[list[Row], list[Row]]:
    """(chunk_stage rows, agg_stage rows) of a de-duplicated batch (numeric points, UTC timestamps)."""
    series: dict[tuple[str, str, datetime], list[tuple[datetime, float, int]]] = {}
    for r in rows:
        t = r[2]
        series.setdefault((r[0], r[1], _floor(t, False)), []).append((t, r[4], r[-1]))
    chunks: list[Row] = []
    aggs: list[Row] = []
    for (device, metric, hour), points in series.items():
        points.sort()
        ts = [p[0] for p in points]
        vals = [p[1] for p in points]
        seqs = [p[2] for p in points]
        top = max(seqs)
        chunks.append((device, metric, ts[0], ts[-1], top, len(ts), ts, None if min(seqs) == top else seqs, vals, hour))
        if not with_rollups:
            continue
        whole = _Agg()
        minutes: dict[datetime, _Agg] = {}
        for t, v in zip(ts, vals, strict=True):
            key = dd_key(v)
            whole.add(v, key)
            m = _floor(t, True)
            agg = minutes.get(m)
            if agg is None:
                agg = minutes[m] = _Agg()
            agg.add(v, key)
        for m, agg in minutes.items():
            aggs.append((device, metric, "m", m, hour, agg.count, agg.total, agg.lo, agg.hi, Jsonb(agg.sketch)))
        aggs.append(
            (device, metric, "h", hour, hour, whole.count, whole.total, whole.lo, whole.hi, Jsonb(whole.sketch))
        )
    return chunks, aggs
