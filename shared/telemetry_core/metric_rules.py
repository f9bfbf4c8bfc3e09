"""Does a point satisfy its metric's definition (FR-007)? Pure; used by the gateway and the ingest worker."""

import math
from collections.abc import Callable

from telemetry_schemas.enums import DataType
from telemetry_schemas.events import MetricDefined
from telemetry_schemas.values import Point, ValueType, value_type

# Which stored value types each declared data type admits.
_ADMITS: dict[DataType, frozenset[ValueType]] = {
    DataType.NUMERIC: frozenset({ValueType.INTEGER, ValueType.FLOAT}),
    DataType.STRING: frozenset({ValueType.STRING}),
    DataType.BOOLEAN: frozenset({ValueType.BOOLEAN}),
    DataType.JSON: frozenset({ValueType.JSON, ValueType.GEOLOCATION}),
    DataType.GEOLOCATION: frozenset({ValueType.GEOLOCATION}),
    # Binary payloads travel as (base64) strings in JSON.
    DataType.BINARY: frozenset({ValueType.STRING}),
}
_NAMES = {
    ValueType.INTEGER: "number",
    ValueType.FLOAT: "number",
    ValueType.STRING: "string",
    ValueType.BOOLEAN: "boolean",
    ValueType.JSON: "JSON object or array",
    ValueType.GEOLOCATION: "geolocation",
}


def definition_problem(point: Point, definition: MetricDefined) -> tuple[str, str] | None:
    """(field, reason) when the value has the wrong type or lies outside [min_value, max_value]."""
    kind = value_type(point.value)
    if kind not in _ADMITS[definition.data_type]:
        return "value", (f"metric {definition.name!r} is defined as {definition.data_type.value}, got a {_NAMES[kind]}")
    if definition.data_type is DataType.NUMERIC:
        number = float(point.value)  # type: ignore[arg-type]
        if definition.min_value is not None and number < definition.min_value:
            return "value", f"{point.value} is below min_value {definition.min_value} of metric {definition.name!r}"
        if definition.max_value is not None and number > definition.max_value:
            return "value", f"{point.value} is above max_value {definition.max_value} of metric {definition.name!r}"
    return None


PointRule = Callable[[Point], tuple[str, str] | None]


def compile_rule(definition: MetricDefined) -> PointRule:
    """A checker for one definition, built once when the definition arrives (the hot path is one call).

    Numeric definitions, the common case, check with plain type and range tests; anything else
    falls back to definition_problem, which also words the error.
    """
    if definition.data_type is not DataType.NUMERIC:
        return lambda point: definition_problem(point, definition)
    lo = -math.inf if definition.min_value is None else definition.min_value
    hi = math.inf if definition.max_value is None else definition.max_value

    def check(point: Point) -> tuple[str, str] | None:
        value = point.value
        if type(value) in (int, float) and lo <= value <= hi:  # type: ignore[operator]
            return None
        return definition_problem(point, definition)

    return check
