"""Constrained value types, declared once so that a bad name can never reach a NATS subject."""

from datetime import datetime
from typing import Annotated, Any

import msgspec

from telemetry_schemas.text import text_meta

# NATS subject tokens may not contain '.', '*', '>' or whitespace; we allow a safe subset. `(?!\n)`: in Python's
# re (msgspec's patterns, the gateway's path check) `$` also matches before a final newline, so without it
# "device\n" passed, and a newline in a NATS subject breaks the protocol line it is sent on. In the ECMA-262
# regexes of JSON Schema and OpenAPI `$` is the end of the string already, and the lookahead changes nothing.
SUBJECT_SAFE = r"^[A-Za-z0-9_\-:]+$(?!\n)"

DeviceId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=SUBJECT_SAFE,
        description="Device id: 1-128 characters from A-Z a-z 0-9 _ - :",
        examples=["device_001"],
    ),
]
MetricName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=SUBJECT_SAFE,
        description="Metric name: 1-128 characters from A-Z a-z 0-9 _ - :",
        examples=["temperature"],
    ),
]
# A point's metric name: the same rule as MetricName, documented as its pattern but run by values.point_problem
# against the names already found valid (msgspec runs a pattern as a Python regex per string: 1.7 of the 2.5 µs
# it took to decode a point). Every point is decoded through codecs.decode_points, which calls point_problem.
PointMetricName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        extra_json_schema={"pattern": SUBJECT_SAFE},
        description="Metric name: 1-128 characters from A-Z a-z 0-9 _ - :",
        examples=["temperature"],
    ),
]
# Point fields: NUL is found by one scan of the request (codecs.decode_points), not a regex per string.
Unit = Annotated[str, text_meta(32, description="Unit of the value, e.g. celsius", nul_checked_by_scan=True)]
TagKey = Annotated[str, text_meta(64, min_length=1, nul_checked_by_scan=True)]
TagValue = Annotated[str, text_meta(256, nul_checked_by_scan=True)]
Tags = Annotated[
    dict[TagKey, TagValue],
    msgspec.Meta(max_length=32, description="Up to 32 string tags (key <= 64, value <= 256 characters)"),
]
Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(max_length=64, description="Free-form JSON object, up to 64 keys, nested at most 32 levels, no NUL"),
]
UtcTimestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 timestamp with a zone, e.g. 2025-12-18T10:00:00Z"),
]
TextValue = Annotated[str, text_meta(8192, nul_checked_by_scan=True)]
# A point's own time: values.point_problem refuses those outside [2000-01-01, 2100-01-01) (422).
PointTimestamp = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description="RFC 3339 timestamp with a zone, from 2000-01-01 up to (not including) 2100-01-01",
        examples=["2025-12-18T10:00:00Z"],
    ),
]
# The end of a half-open range [start_time, end_time): it must be later than start_time (else 422).
EndTime = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 timestamp with a zone; must be after start_time (422 otherwise)"),
]
BatchId = Annotated[str, text_meta(128, min_length=1)]
# Every integer a client may send for paging: bounded so that it always fits PostgreSQL's bigint.
MAX_OFFSET = 1_000_000_000
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET, description=f"Rows to skip, 0-{MAX_OFFSET}")]
