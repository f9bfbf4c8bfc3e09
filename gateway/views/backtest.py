"""Backtest a rule: stream the stored points it would have seen through the pure state machine."""

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from telemetry_core.alerting.backtest import Backtest
from telemetry_core.value_columns import from_columns
from telemetry_schemas.api.alerts import BacktestAlert, BacktestResponse
from telemetry_schemas.rules import RuleSpec

MAX_POINTS = 200_000
ROWS_PER_FETCH = 5000
CONNECT_TIMEOUT_S = 5

# The rule's targeting narrows in SQL as far as it can (ids, tag containment, the "group" tag); the
# state machine's own targeting check then runs on each point, so both always agree.
_FILTER = """
metric_name = %(metric)s AND time >= %(start)s AND time < %(end)s
  AND (%(devices)s::text[] IS NULL OR device_id = ANY(%(devices)s))
  AND (%(tags)s::jsonb IS NULL OR tags @> %(tags)s::jsonb)
  AND (%(groups)s::text[] IS NULL OR tags ->> 'group' = ANY(%(groups)s))
"""
_COUNT = f"SELECT count(*) FROM (SELECT 1 FROM telemetry.points WHERE {_FILTER} LIMIT %(cap)s) AS capped"  # noqa: S608
_ROWS = (
    "SELECT device_id, time, value_type, value_num, value_text, value_bool, value_json, tags "  # noqa: S608
    f"FROM telemetry.points WHERE {_FILTER} ORDER BY time, device_id"
)


class TooManyPointsError(Exception):
    """The range holds more points than a backtest evaluates."""


def _devices(rule: RuleSpec, asked: list[str] | None) -> list[str] | None:
    """Devices the points may come from: the rule's ids, narrowed by the request's (None: any)."""
    if rule.device_ids and asked is not None:
        return sorted(set(rule.device_ids) & set(asked))
    if rule.device_ids:
        return list(rule.device_ids)
    return asked


def _feed(test: Backtest, rows: list[tuple[Any, ...]]) -> None:
    for device_id, time, kind, num, text, flag, obj, tags in rows:
        test.feed(device_id, time.timestamp(), from_columns(kind, num, text, flag, obj), tags)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def evaluate(
    database_url: str, rule: RuleSpec, start: datetime, end: datetime, device_ids: list[str] | None
) -> BacktestResponse:
    """Evaluate ``rule`` over the points of [start, end); raise TooManyPointsError past MAX_POINTS.

    Blocking and CPU-bound (up to MAX_POINTS points through the state machine): it runs in a worker
    process (gateway/off_loop.py) with its own connection, never on the gateway's event loop.
    """
    params = {
        "metric": rule.metric_name,
        "start": start,
        "end": end,
        "devices": _devices(rule, device_ids),
        "tags": Jsonb(rule.device_tags) if rule.device_tags else None,
        "groups": list(rule.device_groups) or None,
        "cap": MAX_POINTS + 1,
    }
    test = Backtest(rule)
    with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute("SET statement_timeout = '30s'")
        row = conn.execute(_COUNT, params).fetchone()
        if row is not None and row[0] > MAX_POINTS:
            raise TooManyPointsError
        with conn.transaction(), conn.cursor(name="backtest") as named:
            named.execute(_ROWS, params)
            while rows := named.fetchmany(ROWS_PER_FETCH):
                _feed(test, rows)
    simulated = test.finish(end.timestamp())
    alerts = [
        BacktestAlert(
            alert_id=a.alert_id, device_id=a.device_id, kind=a.kind, opened_at=_at(a.opened_at), value=a.value,
            resolved_at=None if a.resolved_at is None else _at(a.resolved_at), resolve_reason=a.resolve_reason,
        )
        for a in simulated
    ]  # fmt: skip
    return BacktestResponse(
        alerts=alerts, count=len(alerts), points_evaluated=test.points_evaluated,
        devices_evaluated=test.devices_evaluated, start_time=start, end_time=end,
    )  # fmt: skip
