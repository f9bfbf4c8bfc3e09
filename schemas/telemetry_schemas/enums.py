"""String enums exactly as they appear on the wire."""

from enum import StrEnum


class DataType(StrEnum):
    """What kind of value a metric carries (E2-US1)."""

    NUMERIC = "numeric"
    STRING = "string"
    BOOLEAN = "boolean"
    JSON = "json"
    GEOLOCATION = "geolocation"
    BINARY = "binary"


class MetricType(StrEnum):
    """How a numeric metric behaves over time."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
