"""A point's value ⇄ the typed value columns of points and latest_values (pure)."""

from typing import Any

from telemetry_schemas.values import ValueType, value_type

# (value_type, value_num, value_text, value_bool, value_json)
ValueColumns = tuple[int, float | None, str | None, bool | None, Any]


def to_columns(value: object) -> ValueColumns:
    """Split a decoded value into the typed columns; JSON goes out as the decoded object."""
    kind = value_type(value)
    if kind is ValueType.BOOLEAN:
        return kind, None, None, bool(value), None
    if kind is ValueType.INTEGER or kind is ValueType.FLOAT:
        return kind, float(value), None, None, None  # type: ignore[arg-type]
    if kind is ValueType.STRING:
        return kind, None, str(value), None, None
    return kind, None, None, None, value


def from_columns(kind: int, num: float | None, text: str | None, flag: bool | None, obj: Any) -> Any:
    """Rebuild the value exactly as it was written (integers come back as integers)."""
    if kind == ValueType.INTEGER:
        return None if num is None else int(num)
    if kind == ValueType.FLOAT:
        return num
    if kind == ValueType.STRING:
        return text
    if kind == ValueType.BOOLEAN:
        return flag
    return obj
