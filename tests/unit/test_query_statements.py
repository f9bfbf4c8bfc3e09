"""Query statements are built for the filter given: no generic `x IS NULL OR device_id = ANY(...)` plans.

A query naming devices must say so in the statement (the rollups' primary keys lead with device_id); one
across all devices of hours reads the per-metric hourly rollup, except percentiles (sketches per device).
"""

import itertools

import pytest

from gateway.query_plan import PERCENTILES, Plan, Source
from gateway.views.aggregates import Filter, _prepare, _statement
from gateway.views.history import raw_statement

AGGREGATIONS = ["avg", "min", "max", "sum", "count", *PERCENTILES]


@pytest.mark.parametrize(
    ("source", "aggregation", "per_device", "series", "tags"),
    [
        (s, a, p, f, t)
        for s, a, p, f, t in itertools.product(Source, AGGREGATIONS, [True, False], Filter, [True, False])
        if not (t and s is not Source.RAW)  # rollups carry no tags
    ],
)
def test_aggregate_statements_hold_only_the_given_conditions(
    source: Source, aggregation: str, per_device: bool, series: Filter, tags: bool
) -> None:
    text = _statement(Plan(source, None), aggregation, per_device, series, tags).as_string(None)
    assert "IS NULL" not in text
    assert ("device_id = ANY(%(devices)s)" in text) is (series is Filter.DEVICES)
    assert ("metric_name = ANY(%(metrics)s)" in text) is (series is not Filter.ONE_SERIES)
    assert ("device_id = %(device)s AND " in text and "metric_name = %(metric)s AND " in text) is (
        series is Filter.ONE_SERIES
    )
    assert ("%(tags)s" in text) is tags
    across_every_device = (
        source is Source.HOUR and series is Filter.ALL_DEVICES and not per_device and aggregation not in PERCENTILES
    )
    assert ("telemetry.rollup_metric_hour" in text) is across_every_device


@pytest.mark.parametrize(
    ("metrics", "devices", "series"),
    [
        (["m"], None, Filter.ALL_DEVICES),
        (["m", "n"], None, Filter.ALL_DEVICES),
        (["m"], ["d"], Filter.ONE_SERIES),
        (["m", "n"], ["d"], Filter.DEVICES),
        (["m"], ["d", "e"], Filter.DEVICES),
        (["m"], [], Filter.DEVICES),
    ],
)
def test_one_device_and_one_metric_is_one_series(metrics: list[str], devices: list[str] | None, series: Filter) -> None:
    assert Filter.of(metrics, devices) is series


def test_only_one_series_is_prepared_among_rollup_statements_naming_devices() -> None:
    """Named devices in an array stay unnamed statements (their generic plan's index is the statistics' choice)."""
    for source in (Source.HOUR, Source.MINUTE):
        assert _prepare(source, Filter.ONE_SERIES) is True
        assert _prepare(source, Filter.DEVICES) is False
        assert _prepare(source, Filter.ALL_DEVICES) is None


@pytest.mark.parametrize(("devices", "tags"), [(True, True), (True, False), (False, True), (False, False)])
def test_raw_points_statement_holds_only_the_given_conditions(devices: bool, tags: bool) -> None:
    text = raw_statement(devices, tags).as_string(None)
    assert "IS NULL" not in text
    assert ("device_id = ANY(%(devices)s)" in text) is devices
    assert ("tags @> %(tags)s" in text) is tags
