"""The query cache's rules on their own (gateway/query_cache.py): what a notice, a read, a drop does."""

from datetime import UTC, datetime, timedelta

from gateway.query_cache import PENDING_S, QueryCache
from telemetry_schemas.api.queries import DataPoint, TelemetryDataResponse

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SERIES = ("dev-1", "temperature")
DAY = (T0, T0 + timedelta(days=1))


def answer(*values: float) -> TelemetryDataResponse:
    points = [DataPoint(timestamp=T0 + timedelta(hours=i), device_id=SERIES[0], metric_name=SERIES[1], value=v)
              for i, v in enumerate(values)]  # fmt: skip
    return TelemetryDataResponse(device_id=SERIES[0], metric_name=SERIES[1], data_points=points, count=len(points),
                                 aggregation="avg", interval=3600,
                                 start_time=DAY[0], end_time=DAY[1], limit=1000, offset=0)  # fmt: skip


def cache(**options: float) -> QueryCache:
    made = QueryCache(max_entries=int(options.pop("max_entries", 10)), ttl_s=options.pop("ttl_s", 60.0),
                      max_points=int(options.pop("max_points", 1000)), startup_hold_s=0.0)  # fmt: skip
    made.enable(0.0)
    return made


def keep(c: QueryCache, key: bytes, got: TelemetryDataResponse, span: tuple[datetime, datetime] = DAY,
         series: tuple[str, str] = SERIES, now: float = 0.0) -> bool:  # fmt: skip
    fill = c.begin_fill(series, span, now)
    assert fill is not None
    return c.finish_fill(fill, key, got, now)


def test_a_kept_answer_is_given_until_a_notice_inside_its_range() -> None:
    c = cache()
    assert keep(c, b"q", answer(1.0, 2.0))
    assert c.get(b"q", 1.0) == answer(1.0, 2.0)
    c.notice(SERIES, T0 + timedelta(hours=3), T0 + timedelta(hours=3))
    assert c.get(b"q", 1.0) is None


def test_a_notice_outside_the_range_or_of_another_series_leaves_it() -> None:
    c = cache()
    assert keep(c, b"q", answer(1.0))
    c.notice(SERIES, DAY[1], DAY[1] + timedelta(hours=1))  # [start, end): the end instant is outside
    c.notice(SERIES, T0 - timedelta(hours=2), T0 - timedelta(seconds=1))
    c.notice(("dev-2", "temperature"), T0, T0)
    c.notice(("dev-1", "humidity"), T0, T0)
    assert c.get(b"q", 1.0) == answer(1.0)
    c.notice(SERIES, T0 - timedelta(hours=1), T0)  # ends on the range's first instant: inside
    assert c.get(b"q", 1.0) is None


def test_a_read_in_flight_when_a_notice_arrives_is_not_kept() -> None:
    c = cache()
    fill = c.begin_fill(SERIES, DAY, 0.0)
    assert fill is not None
    c.notice(SERIES, T0, T0)  # its points may have committed after the read's snapshot
    assert not c.finish_fill(fill, b"q", answer(1.0), 1.0)
    assert c.get(b"q", 1.0) is None
    assert keep(c, b"q", answer(9.0))  # a read begun after the notice is kept
    assert c.get(b"q", 1.0) == answer(9.0)


def test_a_read_in_flight_over_another_range_is_kept() -> None:
    c = cache()
    fill = c.begin_fill(SERIES, DAY, 0.0)
    assert fill is not None
    c.notice(SERIES, DAY[1] + timedelta(minutes=1), DAY[1] + timedelta(minutes=2))
    assert c.finish_fill(fill, b"q", answer(1.0), 1.0)


def test_dropping_everything_makes_reads_in_flight_not_count_and_a_failed_read_keeps_nothing() -> None:
    c = cache()
    fill = c.begin_fill(SERIES, DAY, 0.0)
    assert fill is not None
    c.drop_all()
    assert not c.finish_fill(fill, b"q", answer(1.0), 1.0)
    failed = c.begin_fill(SERIES, DAY, 0.0)
    assert failed is not None
    assert not c.finish_fill(failed, b"q", None, 1.0)
    assert c.get(b"q", 1.0) is None
    assert c._fills == {}, "finished reads are forgotten"


def test_off_it_neither_answers_nor_keeps() -> None:
    c = cache()
    assert keep(c, b"q", answer(1.0))
    c.disable()
    assert c.get(b"q", 1.0) is None
    assert c.begin_fill(SERIES, DAY, 1.0) is None
    c.enable(1.0)
    assert c.get(b"q", 1.0) is None, "nothing from before answers after it is back on"


def test_the_ttl_bounds_how_long_an_answer_is_given() -> None:
    c = cache(ttl_s=5.0)
    assert keep(c, b"q", answer(1.0), now=10.0)
    assert c.get(b"q", 14.9) == answer(1.0)
    assert c.get(b"q", 15.0) is None


def test_an_old_writers_notice_holds_every_read_for_the_ttl() -> None:
    c = cache(ttl_s=5.0)
    assert keep(c, b"q", answer(1.0))
    c.hold(10.0)  # its rollups are recomputed after the notice: a read now could miss that
    assert c.get(b"q", 10.0) is None
    assert c.begin_fill(SERIES, DAY, 14.9) is None
    assert c.begin_fill(SERIES, DAY, 15.0) is not None


def test_least_recently_used_answers_go_first_by_count_and_by_points() -> None:
    c = cache(max_entries=2, max_points=100)
    assert keep(c, b"a", answer(1.0))
    assert keep(c, b"b", answer(2.0))
    assert c.get(b"a", 1.0) is not None  # b is now the least recently used
    assert keep(c, b"c", answer(3.0))
    assert [c.get(k, 1.0) is not None for k in (b"a", b"b", b"c")] == [True, False, True]
    assert not keep(c, b"big", answer(*[0.0] * 11)), "over a tenth of max_points: not kept"
    for i in range(9):  # 9 x 10 points + the 2 held: 92 of 100
        assert keep(c, f"m{i}".encode(), answer(*[0.0] * 10), series=(f"dev-{i}", "t"))
    assert len(c) == 2
    assert c._points == sum(len(e.answer.data_points) for e in c._entries.values())
    # The index by series follows evictions: a notice for an evicted entry's series finds nothing to drop.
    assert set(c._by_series) == {e.series for e in c._entries.values()}


def test_a_read_that_began_earlier_never_replaces_the_answer_of_one_that_began_later() -> None:
    """The earlier read may have missed a commit the later one saw (its notice still on its way)."""
    c = cache()
    earlier = c.begin_fill(SERIES, DAY, 0.0)
    later = c.begin_fill(SERIES, DAY, 0.0)
    assert earlier is not None and later is not None
    assert c.finish_fill(later, b"q", answer(2.0), 1.0)
    assert not c.finish_fill(earlier, b"q", answer(1.0), 1.0)
    assert c.get(b"q", 1.0) == answer(2.0)
    newest = c.begin_fill(SERIES, DAY, 2.0)
    assert newest is not None
    assert c.finish_fill(newest, b"q", answer(3.0), 2.0)  # a read that began later still replaces it
    assert c.get(b"q", 2.0) == answer(3.0)


def test_an_announced_write_holds_its_range_out_until_its_stored_notice() -> None:
    """Announced before its commit: a read begun now may miss it, an answer kept before would not show it."""
    c = cache()
    assert keep(c, b"q", answer(1.0))
    c.storing(SERIES, T0 + timedelta(hours=1), T0 + timedelta(hours=1), 7, now=1.0)
    assert c.get(b"q", 1.0) is None, "dropped at once, before the commit"
    assert c.begin_fill(SERIES, DAY, 1.5) is None, "nothing over the range is kept while it is pending"
    other = c.begin_fill(SERIES, (DAY[1], DAY[1] + timedelta(days=1)), 1.5)
    assert other is not None, "another range of the series is not held"
    c.notice(SERIES, T0 + timedelta(hours=1), T0 + timedelta(hours=1), seq=6)  # another message's notice
    assert c.begin_fill(SERIES, DAY, 2.0) is None
    c.notice(SERIES, T0 + timedelta(hours=1), T0 + timedelta(hours=1), seq=7)  # its own: committed
    assert keep(c, b"q", answer(2.0), now=2.0)
    assert c.get(b"q", 2.0) == answer(2.0)


def test_an_announcement_never_followed_by_its_notice_expires() -> None:
    """The transaction failed and the message was not redelivered in time: the range is cached again later."""
    c = cache()
    c.storing(SERIES, T0, T0, 7, now=0.0)
    assert c.begin_fill(SERIES, DAY, PENDING_S - 0.1) is None
    assert keep(c, b"q", answer(1.0), now=PENDING_S)
    c.expire(PENDING_S)
    assert c._pending == {}


def test_after_subscribing_nothing_is_kept_for_the_startup_hold() -> None:
    """A transaction announced before the subscription existed may still commit."""
    c = QueryCache(max_entries=10, ttl_s=60.0, startup_hold_s=5.0)
    c.enable(100.0)
    assert c.holding(104.9) and c.begin_fill(SERIES, DAY, 104.9) is None
    assert not c.holding(105.0)
    assert keep(c, b"q", answer(1.0), now=105.0)
