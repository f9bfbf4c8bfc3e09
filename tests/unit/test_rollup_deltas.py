"""ingest_worker/rollup_deltas.py: the buckets, sums and sketches a fresh batch adds, and the rows its COPY sends."""

from datetime import UTC, datetime, timedelta, timezone

from ingest_worker.rollup_deltas import dd_key, inserted_counts, rollup_rows, with_first_seq
from ingest_worker.rows import RowSet
from telemetry_schemas.values import Point

T = datetime(2031, 1, 1, 9, 59, 50, tzinfo=UTC)
MINUS_ONE = timezone(timedelta(hours=-1))


def rows_of(*points: tuple[str, datetime, object, int]) -> list[tuple[object, ...]]:
    rows = RowSet()
    for metric, at, value, seq in points:
        rows.add("d", Point(timestamp=at, metric_name=metric, value=value), seq)  # type: ignore[arg-type]
    return rows.rows()


def test_minutes_then_hours_with_counts_sums_extremes_and_sketches() -> None:
    rows = rows_of(
        ("m", T, 2.0, 1), ("m", T + timedelta(seconds=5), -3.0, 1), ("m", T + timedelta(seconds=20), 4, 2),
        ("m", T + timedelta(seconds=21), "text", 2), ("m", T + timedelta(seconds=22), True, 2),
    )  # fmt: skip
    got = [(g, d, m, b, n, s, lo, hi, dict(sk.obj)) for g, d, m, b, n, s, lo, hi, sk in rollup_rows(rows)]
    assert got == [
        ("m", "d", "m", datetime(2031, 1, 1, 9, 59, tzinfo=UTC), 2, -1.0, -3.0, 2.0, {dd_key(2.0): 1, dd_key(-3.0): 1}),
        ("m", "d", "m", datetime(2031, 1, 1, 10, 0, tzinfo=UTC), 1, 4.0, 4.0, 4.0, {dd_key(4.0): 1}),
        ("h", "d", "m", datetime(2031, 1, 1, 9, tzinfo=UTC), 2, -1.0, -3.0, 2.0, {dd_key(2.0): 1, dd_key(-3.0): 1}),
        ("h", "d", "m", datetime(2031, 1, 1, 10, tzinfo=UTC), 1, 4.0, 4.0, 4.0, {dd_key(4.0): 1}),
    ]


def test_an_offset_timestamp_lands_in_its_utc_hour() -> None:
    at = datetime(2031, 1, 1, 9, 30, tzinfo=MINUS_ONE)  # 10:30 UTC
    (minute, hour) = rollup_rows(rows_of(("m", at, 1.5, 7)))
    assert (minute[3], hour[3]) == (datetime(2031, 1, 1, 10, 30, tzinfo=UTC), datetime(2031, 1, 1, 10, tzinfo=UTC))
    assert inserted_counts(rows_of(("m", at, 1.5, 7), ("n", at, 2.0, 8))) == {
        (7, "m"): [(datetime(2031, 1, 1, 10, tzinfo=UTC), 1)],
        (8, "n"): [(datetime(2031, 1, 1, 10, tzinfo=UTC), 1)],
    }


def test_the_copy_rows_are_in_key_order_with_first_seq() -> None:
    late_utc = datetime(2031, 1, 1, 9, 30, tzinfo=MINUS_ONE)  # 10:30 UTC, written as 09:30
    rows = rows_of(("b", T, 1.0, 3), ("a", late_utc, 2.0, 4), ("a", T, 3.0, 5))
    copied = with_first_seq(rows)
    assert [(r[1], r[2], r[-2], r[-1]) for r in copied] == [("a", T, 5, 5), ("a", late_utc, 4, 4), ("b", T, 3, 3)]
    assert [r[:-1] for r in copied] == sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def test_the_sketch_key_bands() -> None:
    assert [dd_key(v) for v in (0.0, 1e-10, -1e-10, 1.0, 1.02, -1.02)] == ["z", "z", "z", "p0", "p2", "n2"]
