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


class AlertLevel(StrEnum):
    """Severity of an alert rule and its alerts (E4-US1)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"
    EMERGENCY = "emergency"


class Comparison(StrEnum):
    """A rule's condition: value <op> threshold."""

    GT = ">"
    LT = "<"
    GE = ">="
    LE = "<="
    EQ = "=="
    NE = "!="


class AlertStatus(StrEnum):
    """Where an alert is in its lifecycle."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ApiKeyScope(StrEnum):
    """What an API key may do: ingest writes points, read reads, admin does everything (defines metrics, rules)."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"
