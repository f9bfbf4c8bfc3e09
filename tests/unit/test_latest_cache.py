"""The latest-value cache's rules on their own (gateway/latest_cache.py): what a notice, a fill, a drop does."""

from datetime import UTC, datetime, timedelta

from gateway.latest_cache import REFILLS_PER_READ, REPROBE_AFTER, Key, LatestCache
from telemetry_schemas.api.queries import LatestValueResponse

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = ("dev-1", "temperature")


def row(value: float, at: datetime = T0) -> LatestValueResponse:
    return LatestValueResponse(device_id=KEY[0], metric_name=KEY[1], value=value, unit=None, timestamp=at, tags={},
                               metadata={})  # fmt: skip


def filled(value: float = 1.0, at: datetime = T0, seq: int = 10, now: float = 0.0) -> LatestCache:
    cache = LatestCache(max_entries=10, ttl_s=60.0)
    cache.enable()
    fill = cache.begin_fill(KEY)
    assert fill is not None
    assert cache.finish_fill(fill, row(value, at), (at, seq), True, now)
    return cache


def test_a_fill_answers_until_a_newer_notice_makes_it_pending() -> None:
    cache = filled(1.0)
    assert cache.get(KEY, 1.0) == row(1.0)
    cache.notice(KEY, (T0 + timedelta(seconds=1), 11))
    assert cache.get(KEY, 1.0) is None


def test_an_older_or_equal_notice_leaves_the_newer_row_answering() -> None:
    cache = filled(1.0, seq=10)
    cache.notice(KEY, (T0 - timedelta(seconds=5), 99))  # a late point: older time, later message
    cache.notice(KEY, (T0, 10))  # the row's own notice, delivered again
    cache.notice(KEY, (T0, 9))  # same instant, earlier message: latest_values keeps seq 10
    assert cache.get(KEY, 1.0) == row(1.0)


def test_same_instant_later_message_wins_like_latest_values() -> None:
    cache = filled(1.0, seq=10)
    cache.notice(KEY, (T0, 11))  # an overwrite of the same timestamp by a later POINTS message
    assert cache.get(KEY, 1.0) is None
    fill = cache.begin_fill(KEY)
    assert fill is not None
    assert not cache.finish_fill(fill, row(1.0), (T0, 10), True, 2.0)  # the database not yet caught up
    assert cache.get(KEY, 2.0) is None
    assert cache.finish_fill(fill, row(2.0), (T0, 11), True, 2.0)
    assert cache.get(KEY, 2.0) == row(2.0)


def test_a_notice_during_the_read_keeps_the_older_row_out() -> None:
    cache = LatestCache(max_entries=10, ttl_s=60.0)
    cache.enable()
    fill = cache.begin_fill(KEY)
    assert fill is not None
    cache.notice(KEY, (T0 + timedelta(seconds=1), 11))  # arrives while the SELECT runs
    assert not cache.finish_fill(fill, row(1.0), (T0, 10), True, 0.0)
    assert cache.get(KEY, 0.0) is None


def test_a_row_behind_the_raw_points_is_not_kept() -> None:
    cache = LatestCache(max_entries=10, ttl_s=60.0)
    cache.enable()
    fill = cache.begin_fill(KEY)
    assert fill is not None
    assert not cache.finish_fill(fill, row(1.0), (T0, 10), False, 0.0)  # caught_up False: a notice not applied yet
    assert cache.get(KEY, 0.0) is None


def test_a_drop_empties_the_cache_and_voids_reads_in_flight() -> None:
    cache = filled(1.0)
    other = ("dev-2", "temperature")
    fill = cache.begin_fill(other)
    assert fill is not None
    cache.drop_all()  # e.g. the subscription dropped notices (slow consumer)
    assert cache.get(KEY, 1.0) is None
    assert len(cache) == 0
    assert not cache.finish_fill(fill, row(3.0), (T0, 12), True, 1.0)


def test_a_disabled_cache_neither_answers_nor_fills() -> None:
    cache = filled(1.0)
    cache.disable()  # the subscription is down
    assert cache.get(KEY, 1.0) is None
    assert cache.begin_fill(KEY) is None
    cache.enable()
    assert cache.get(KEY, 1.0) is None  # nothing from before the outage answers


def test_least_recently_used_entries_leave_first() -> None:
    cache = LatestCache(max_entries=2, ttl_s=60.0)
    cache.enable()
    keys = [("dev-a", "m"), ("dev-b", "m"), ("dev-c", "m")]
    for i, key in enumerate(keys[:2]):
        fill = cache.begin_fill(key)
        assert fill is not None
        cache.finish_fill(fill, row(float(i)), (T0, i), True, 0.0)
    assert cache.get(keys[0], 0.0) is not None  # dev-a is now the most recently used
    fill = cache.begin_fill(keys[2])
    assert fill is not None
    assert len(cache) == 2
    assert cache.get(keys[1], 0.0) is None  # dev-b went
    assert cache.get(keys[0], 0.0) is not None


def test_an_entry_is_read_again_after_the_ttl() -> None:
    cache = filled(1.0, now=100.0)
    assert cache.get(KEY, 159.0) is not None
    assert cache.get(KEY, 160.0) is None


def prefilled(cache: LatestCache, key: Key, value: float, at: datetime, seq: int) -> None:
    fill = cache.begin_fill(key, evict=False)
    assert fill is not None
    assert cache.finish_fill(fill, row(value, at), (at, seq), True, 0.0)


def test_the_prefill_is_handed_the_noticed_series_the_cache_does_not_hold_once() -> None:
    cache = LatestCache(max_entries=10, ttl_s=60.0)
    cache.enable()
    prefilled(cache, KEY, 1.0, T0, 10)  # held, never read
    other, third = ("dev-2", "temperature"), ("dev-3", "temperature")
    cache.notice(other, (T0, 11))
    assert cache.take_noticed() == []  # prefill not started: nothing remembered
    cache.start_prefill()
    cache.notice(KEY, (T0 + timedelta(seconds=1), 11))  # held and not read: pending, not for the prefill
    cache.notice(other, (T0, 12))
    cache.notice(third, (T0, 13))
    cache.notice(other, (T0, 14))  # again: once
    assert cache.take_noticed() == [other, third]
    assert cache.take_noticed() == []
    cache.notice(other, (T0, 15))
    fill = cache.begin_fill(other)  # a read got there first
    assert fill is not None
    assert cache.take_noticed() == []


def test_a_read_entry_a_notice_makes_pending_is_handed_to_the_prefill_a_bounded_number_of_times_per_read() -> None:
    cache = filled(1.0, seq=10)  # a request's miss filled it: read
    cache.start_prefill()
    cache.notice(("dev-2", "temperature"), (T0, 5))  # not held: the new series' list, not the refills
    cache.notice(KEY, (T0 + timedelta(seconds=1), 11))
    cache.notice(KEY, (T0 + timedelta(seconds=2), 12))  # again before the round: handed over once, one refill used
    assert cache.take_refills() == [KEY]
    assert cache.take_noticed() == [("dev-2", "temperature")]
    for n in range(3, REFILLS_PER_READ + 3):  # written again after each prefill, nobody reading
        at = T0 + timedelta(seconds=n)
        prefilled(cache, KEY, float(n - 1), at - timedelta(seconds=1), n + 9)
        cache.notice(KEY, (at - timedelta(seconds=2), 99))  # older than the row: still held, nothing to refill
        assert cache.take_refills() == []
        cache.notice(KEY, (at, n + 10))
        assert cache.take_refills() == ([KEY] if n < REFILLS_PER_READ + 2 else [])  # the read's refills run out
    at = T0 + timedelta(seconds=30)
    prefilled(cache, KEY, 30.0, at, 40)
    assert cache.get(KEY, 1.0) == row(30.0, at)  # a poll reads it: its refills are back
    cache.notice(KEY, (at + timedelta(seconds=1), 41))
    assert cache.take_refills() == [KEY]
    cache.notice(KEY, (at + timedelta(seconds=2), 42))
    fill = cache.begin_fill(KEY)  # a request got there before the round and filled it
    assert fill is not None
    assert cache.finish_fill(fill, row(5.0, at + timedelta(seconds=2)), (at + timedelta(seconds=2), 42), True, 2.0)
    assert cache.take_refills() == []  # held again: nothing for the prefill


def test_the_prefill_remembers_no_more_series_than_the_room_left() -> None:
    cache = LatestCache(max_entries=3, ttl_s=60.0)
    cache.enable()
    cache.start_prefill()
    assert cache.begin_fill(KEY) is not None  # one entry: room for two
    for d in range(5):
        cache.notice((f"dev-{d + 10}", "temperature"), (T0, d))
    assert cache.take_noticed() == [("dev-10", "temperature"), ("dev-11", "temperature")]


def test_needs_fill_says_whether_a_prefill_could_add_a_row() -> None:
    cache = LatestCache(max_entries=2, ttl_s=60.0)
    other = ("dev-2", "temperature")
    assert not cache.needs_fill(KEY)  # off: nothing is kept
    cache.enable()
    assert cache.needs_fill(KEY)  # absent, room left
    fill = cache.begin_fill(KEY)
    assert fill is not None and cache.needs_fill(KEY)  # pending
    assert cache.finish_fill(fill, row(1.0), (T0, 10), True, 0.0)
    assert not cache.needs_fill(KEY)  # held
    assert cache.begin_fill(other) is not None  # full now
    assert not cache.needs_fill(("dev-3", "temperature"))  # would push out an entry being read
    cache.notice(KEY, (T0 + timedelta(seconds=1), 11))
    assert cache.needs_fill(KEY)  # pending again


def test_a_fill_that_must_not_evict_is_refused_when_full() -> None:
    cache = filled(1.0)  # max_entries=10, one entry
    for d in range(9):
        assert cache.begin_fill((f"dev-{d + 10}", "temperature"), evict=False) is not None
    assert cache.begin_fill(("dev-99", "temperature"), evict=False) is None  # full: nothing pushed out
    assert cache.get(KEY, 1.0) == row(1.0) and len(cache) == 10
    assert cache.begin_fill(KEY, evict=False) is not None  # held already: no room needed


def written_between_reads(cache: LatestCache, writes: int, start: int) -> int:
    """``writes`` notices of KEY, each after the prefill refilled the last (the prefill's rounds); refills handed."""
    handed = 0
    for n in range(start, start + writes):
        at = T0 + timedelta(seconds=n)
        cache.notice(KEY, (at, n))
        if cache.take_refills() == [KEY]:
            handed += 1
            prefilled(cache, KEY, float(n), at, n)
    return handed


def test_a_series_written_more_often_than_its_refills_cover_gets_fewer_and_a_refill_that_answers_restores_them() -> (
    None
):
    cache = filled(1.0, seq=0)  # a request's miss filled it: read
    cache.start_prefill()
    spent = []
    n = 1
    for _poll in range(4 + REPROBE_AFTER):  # 10 writes between polls, each poll a miss: every refill is wasted
        spent.append(written_between_reads(cache, 10, n))
        n += 10
        assert cache.get(KEY, 1.0) is None  # pending: the last writes went unrefilled
        assert cache.begin_fill(KEY) is not None  # the poll's own read
    # Halved down to one per read; after REPROBE_AFTER polls at one the full budget is tried again (the series
    # might have slowed down since): it has not, so the next poll halves it again.
    assert spent == [REFILLS_PER_READ, 4, 2, *[1] * REPROBE_AFTER, REFILLS_PER_READ]
    assert written_between_reads(cache, 10, n) == 4


def test_a_miss_while_refills_are_left_keeps_the_budget() -> None:
    cache = filled(1.0, seq=0)
    cache.start_prefill()
    cache.notice(KEY, (T0 + timedelta(seconds=1), 1))  # written just before the poll: the refill is still queued
    assert cache.get(KEY, 1.0) is None
    fill = cache.begin_fill(KEY)  # a miss, but not for lack of refills
    assert fill is not None
    assert cache.finish_fill(fill, row(2.0, T0 + timedelta(seconds=1)), (T0 + timedelta(seconds=1), 1), True, 1.0)
    assert cache.take_refills() == []  # the poll filled it first
    assert written_between_reads(cache, REFILLS_PER_READ + 2, 2) == REFILLS_PER_READ


def test_a_refill_that_answers_a_read_restores_the_full_budget() -> None:
    cache = filled(1.0, seq=0)
    cache.start_prefill()
    n = 1
    for _poll in range(4):  # down to one refill per read
        written_between_reads(cache, 10, n)
        n += 10
        assert cache.begin_fill(KEY) is not None
    assert written_between_reads(cache, 1, n) == 1  # the series slows down: its one refill is there for the poll
    assert cache.get(KEY, 1.0) is not None
    assert written_between_reads(cache, 10, n + 1) == REFILLS_PER_READ
