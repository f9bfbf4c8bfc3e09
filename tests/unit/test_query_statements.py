"""Query statements are built for the filter given: no generic `x IS NULL OR device_id = ANY(...)` plans.

A query naming devices must say so in the statement (the rollups' primary keys lead with device_id); one
across all devices of hours reads the per-metric hourly rollup, except percentiles (sketches per device).
"""

import itertools

import pytest

from gateway.query_plan import PERCENTILES, Plan, Source
from gateway.views.aggregates import _statement
from gateway.views.history import raw_statement

AGGREGATIONS = ["avg", "min", "max", "sum", "count", *PERCENTILES]


@pytest.mark.parametrize(
    ("source", "aggregation", "per_device", "devices", "tags"),
    [
        (s, a, p, d, t)
        for s, a, p, d, t in itertools.product(Source, AGGREGATIONS, [True, False], [True, False], [True, False])
        if not (t and s is not Source.RAW)  # rollups carry no tags
    ],
)
def test_aggregate_statements_hold_only_the_given_conditions(
    source: Source, aggregation: str, per_device: bool, devices: bool, tags: bool
) -> None:
    text = _statement(Plan(source, None), aggregation, per_device, devices, tags).as_string(None)
    assert "IS NULL" not in text
    assert ("device_id = ANY(%(devices)s)" in text) is devices
    assert ("%(tags)s" in text) is tags
    across_every_device = source is Source.HOUR and not devices and not per_device and aggregation not in PERCENTILES
    assert ("telemetry.rollup_metric_hour" in text) is across_every_device


@pytest.mark.parametrize(("devices", "tags"), [(True, True), (True, False), (False, True), (False, False)])
def test_raw_points_statement_holds_only_the_given_conditions(devices: bool, tags: bool) -> None:
    text = raw_statement(devices, tags).as_string(None)
    assert "IS NULL" not in text
    assert ("device_id = ANY(%(devices)s)" in text) is devices
    assert ("tags @> %(tags)s" in text) is tags
