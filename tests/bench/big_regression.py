"""The p99-over-30-d regression, before and after its fix, on the same loaded data in the same run.

Cause (found with EXPLAIN ANALYZE): psycopg prepares a statement a connection has run 5 times, and
PostgreSQL then switches to a generic plan when its estimate beats the custom plans'. For the gateway's
device-filtered rollup_hour statements over long ranges it does: the generic plan picks an index-only scan
of rollup_hour_by_metric_covering (migration 0014) with the device as a filter, reading every device's
hours of the metric. The fix (gateway/views/aggregates.py ``_prepare``) never prepares those statements.

Two measurements: the statement alone on two connections (psycopg's default vs never prepared), with the
plans PostgreSQL picks for each; and the HTTP query through a gateway running the code from before the
fix (``git archive`` of BIGQ_BEFORE_REF put first on its PYTHONPATH) beside one running this code.
"""

import json
import subprocess
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway.views.aggregates import _POINTS_IN, Filter, _filter
from tests.bench.big_query_set import MONTH
from tests.bench.queries import Dataset
from tests.bench.stats import percentile

REPO = Path(__file__).resolve().parents[2]
# The statement prefer_exact runs for one series before reading its exact percentile (as built by the gateway).
COUNT = sql.SQL(_POINTS_IN).format(table=sql.SQL("telemetry.rollup_hour"), filter=_filter("bucket", Filter.DEVICES))
_PREPARE = (
    "PREPARE bq_count(text[], timestamptz, timestamptz, text[]) AS SELECT coalesce(sum(count), 0) "
    "FROM telemetry.rollup_hour WHERE metric_name = ANY($1) AND bucket >= $2 AND bucket < $3 AND device_id = ANY($4)"
)


@dataclass(frozen=True)
class PlanSeen:
    mode: str
    index: str
    rows_read: int  # index entries visited (rows returned + removed by the filter)
    ms: float


@dataclass(frozen=True)
class StatementTiming:
    prepared: list[float]  # psycopg's default: server-side prepared from the 5th run
    unprepared: list[float]  # prepare=False (the fix)
    plans: list[PlanSeen]

    @staticmethod
    def p(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000


def _scan(node: dict[str, Any]) -> dict[str, Any]:
    while "Index Name" not in node and node.get("Plans"):
        node = node["Plans"][0]
    return node


def plans(database_url: str, params: tuple[list[str], datetime, datetime, list[str]]) -> list[PlanSeen]:
    """EXPLAIN ANALYZE of the count statement under a custom and a generic plan."""
    out = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_PREPARE)
        cur = psycopg.ClientCursor(conn)
        for mode in ("force_custom_plan", "force_generic_plan"):
            conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.SQL(mode)))
            for _ in range(3):  # warm
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bq_count(%s, %s, %s, %s)", params)
                doc = cur.fetchone()
            plan = (doc[0] if isinstance(doc[0], list) else json.loads(doc[0]))[0]  # type: ignore[index]
            scan = _scan(plan["Plan"])
            rows = int(scan.get("Actual Rows", 0)) + int(scan.get("Rows Removed by Filter", 0))
            out.append(PlanSeen(mode, scan.get("Index Name", scan["Node Type"]), rows, float(plan["Execution Time"])))
    return out


def time_statement(database_url: str, ds: Dataset, runs: int) -> StatementTiming:
    """The count statement for one 30-day series, alternating blocks on the two connections."""
    month = ds.end - MONTH
    params = {"metrics": [ds.metric_names[3]], "start": month, "end": ds.end}
    timings: dict[bool, list[float]] = {True: [], False: []}
    with psycopg.connect(database_url, autocommit=True) as a, psycopg.connect(database_url, autocommit=True) as b:
        conns = {True: a, False: b}
        for block in range(2 * (runs // 20) + 2):
            default = block % 2 == 0
            for i in range(20):
                device = ds.device_ids[(block * 20 + i) * 7919 % ds.devices]
                t = time.perf_counter()
                conns[default].execute(COUNT, {**params, "devices": [device]}, prepare=None if default else False)
                if block >= 2:  # the first two blocks warm up (and get the default one prepared)
                    timings[default].append(time.perf_counter() - t)
    seen = plans(database_url, ([ds.metric_names[3]], month, ds.end, [ds.device_ids[42 % ds.devices]]))
    return StatementTiming(timings[True], timings[False], seen)


def before_tree(ref: str, into: Path) -> Path | None:
    """The ``gateway`` package as of ``ref`` under ``into`` (None when git cannot give it)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", ref, "gateway"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into
