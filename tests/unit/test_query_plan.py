from datetime import UTC, datetime

import pytest

from gateway.query_plan import SKETCH_RELATIVE_ERROR, Source, bucket_count, choose_source
from gateway.series_query import default_interval

T0 = datetime(2025, 12, 17, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "interval", "source"),
    [
        (T0, T0.replace(hour=2), 3600, Source.HOUR),
        (T0, T0.replace(hour=2), 7200, Source.HOUR),
        (T0, T0.replace(hour=2), 1800, Source.MINUTE),
        (T0, T0.replace(hour=1, minute=30), 3600, Source.MINUTE),  # end not on an hour: minutes tile it
        (T0, T0.replace(hour=2), 90, Source.RAW),  # buckets of 1.5 min cut minutes in half
        (T0, T0.replace(hour=2), 30, Source.RAW),
        (T0.replace(second=30), T0.replace(hour=2), 3600, Source.RAW),
    ],
)
def test_the_coarsest_exact_source_is_chosen(start: datetime, end: datetime, interval: int, source: Source) -> None:
    assert choose_source(start, end, interval, "avg").source is source


def test_percentiles_from_sketches_carry_the_error_bound() -> None:
    assert choose_source(T0, T0.replace(hour=2), 3600, "p95").relative_error == SKETCH_RELATIVE_ERROR < 0.01
    assert choose_source(T0, T0.replace(hour=2), 3600, "sum").relative_error is None
    assert choose_source(T0, T0.replace(hour=2), 30, "p95").relative_error is None


def test_bucket_count_and_default_intervals() -> None:
    assert bucket_count(T0, T0.replace(hour=2), 3600) == 2
    assert bucket_count(T0, T0.replace(hour=2, second=1), 3600) == 3
    assert [default_interval(s) for s in (3600, 86_400, 7 * 86_400, 90 * 86_400)] == [60, 900, 3600, 86_400]
