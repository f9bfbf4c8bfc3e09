"""Constrained value types, declared once so that a bad name can never reach a NATS subject."""

from datetime import datetime
from typing import Annotated, Any

import msgspec

# NATS subject tokens may not contain '.', '*', '>' or whitespace; we allow a safe subset.
SUBJECT_SAFE = r"^[A-Za-z0-9_\-:]+$"

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
Unit = Annotated[str, msgspec.Meta(max_length=32, description="Unit of the value, e.g. celsius")]
TagKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
TagValue = Annotated[str, msgspec.Meta(max_length=256)]
Tags = Annotated[
    dict[TagKey, TagValue],
    msgspec.Meta(max_length=32, description="Up to 32 string tags (key <= 64, value <= 256 characters)"),
]
Metadata = Annotated[dict[str, Any], msgspec.Meta(max_length=64, description="Free-form JSON object, up to 64 keys")]
UtcTimestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 timestamp with a zone, e.g. 2025-12-18T10:00:00Z"),
]
TextValue = Annotated[str, msgspec.Meta(max_length=8192)]
BatchId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
