"""The worker's per-point Python in one pass (issue 13 item 3): the same rows and notices as the plain versions.

RowSet.add_points and point_row's number fast path, and build_notice's single pass per metric, are checked
against straightforward references (the code they replaced) on random messages: every value type, offsets
other than UTC, equal timestamps, keys repeated within and across messages with older and newer sequences.
"""

import random
from datetime import UTC, datetime, timedelta, timezone

from psycopg.types.json import Json

from ingest_worker.notices import build_notice
from ingest_worker.rows import DumpedJsonb, RowSet, point_row
from telemetry_core.value_columns import to_columns
from telemetry_schemas.notices import MetricStored
from telemetry_schemas.values import Point, ValueType, value_type

T0 = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7)), timezone(timedelta(seconds=37)))


def reference_row(device_id: str, point: Point, seq: int) -> tuple[object, ...]:
    kind, num, text, flag, obj = to_columns(point.value)
    return (device_id, point.metric_name, point.timestamp, int(kind), num, text, flag,
            None if obj is None else Json(obj), point.unit, DumpedJsonb.of(point.tags) if point.tags else None,
            Json(point.metadata) if point.metadata else None, seq)  # fmt: skip


def reference_metrics(points: list[Point]) -> list[MetricStored]:
    """build_notice's per-metric summary as it was written before the single pass."""
    by_metric: dict[str, list[Point]] = {}
    for point in points:
        by_metric.setdefault(point.metric_name, []).append(point)
    out = []
    for name, group in by_metric.items():
        newest = max(reversed(group), key=lambda p: p.timestamp)
        numeric = (ValueType.INTEGER, ValueType.FLOAT)
        minutes = {p.timestamp.astimezone(UTC).replace(second=0, microsecond=0) for p in group
                   if value_type(p.value) in numeric}  # fmt: skip
        out.append(MetricStored(metric_name=name, count=len(group), first_time=min(p.timestamp for p in group),
                                last_time=newest.timestamp, latest=newest, minutes=sorted(minutes)))  # fmt: skip
    return out


def random_value(rng: random.Random) -> object:
    return rng.choice([rng.uniform(-5, 5), rng.randrange(-9, 9), True, False, "text", {"lat": 1.0, "lon": 2.0},
                       {"k": [1, 2]}, 0, 0.0, 2**40])  # fmt: skip


def random_points(rng: random.Random, n: int) -> list[Point]:
    out = []
    for _ in range(n):
        t = T0 + timedelta(seconds=rng.randrange(0, 400), microseconds=rng.choice([0, 999_999, 5]))
        out.append(Point(timestamp=t.astimezone(rng.choice(ZONES)), metric_name=rng.choice("abc"),
                         value=random_value(rng), unit=rng.choice([None, "C"]),
                         tags=rng.choice([{}, {"site": "x"}]), metadata=rng.choice([{}, {"q": 1}])))  # fmt: skip
    return out


def rows_key(rows: list[tuple[object, ...]]) -> list[str]:
    return sorted(repr(r) for r in rows)


def test_point_row_numbers_fast_path_gives_the_general_row() -> None:
    rng = random.Random(21)
    for point in random_points(rng, 500):
        got, want = point_row("d", point, 7), reference_row("d", point, 7)
        assert repr(got) == repr(want)
        assert [type(x) for x in got] == [type(x) for x in want]  # e.g. True stays a bool column, 3 becomes 3.0


def test_add_points_keeps_the_later_message_like_add() -> None:
    """In stream order, and resolved to one row per key like the keyed RowSet it replaced (later message wins)."""
    rng = random.Random(5)
    for _ in range(30):
        keyed: dict[tuple[object, ...], tuple[object, ...]] = {}
        in_order: list[tuple[object, ...]] = []
        days = set()
        batched = RowSet()
        for seq in [*rng.sample(range(1, 20), 5), rng.randrange(1, 20)]:  # replays and older sequences
            points = random_points(rng, rng.randrange(1, 40))
            for point in points:
                reference = reference_row("d", point, seq)
                in_order.append(reference)
                key = ("d", point.metric_name, point.timestamp)
                held = keyed.get(key)
                if held is None or held[-1] <= seq:
                    keyed[key] = reference
                days.add(point.timestamp.astimezone(UTC).date())
            batched.add_points("d", points, seq)
        assert [repr(r) for r in batched.rows()] == [repr(r) for r in in_order]
        assert rows_key(batched.latest()) == rows_key(list(keyed.values()))
        assert batched.days() == days


def test_build_notice_single_pass_matches_the_reference() -> None:
    rng = random.Random(13)
    for _ in range(200):
        points = random_points(rng, rng.randrange(1, 60))
        if rng.random() < 0.5:  # equal timestamps with different values: the later one in the message is newest
            points.append(Point(timestamp=points[0].timestamp, metric_name=points[0].metric_name, value=rng.random()))
        notice = build_notice("d", 9, points)
        assert notice.metrics == reference_metrics(points)
        assert all(m.tzinfo is UTC for metric in notice.metrics for m in metric.minutes)
