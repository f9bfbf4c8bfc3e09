"""Comparison operators of alert rules (pure)."""

import operator
from collections.abc import Callable
from typing import Any

from telemetry_schemas.enums import Comparison

_OPS: dict[Comparison, Callable[[Any, Any], bool]] = {
    Comparison.GT: operator.gt,
    Comparison.LT: operator.lt,
    Comparison.GE: operator.ge,
    Comparison.LE: operator.le,
    Comparison.EQ: operator.eq,
    Comparison.NE: operator.ne,
}
_ORDERED = {Comparison.GT, Comparison.LT, Comparison.GE, Comparison.LE}


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def holds(condition: Comparison, value: object, threshold: object) -> bool:
    """Whether ``value <condition> threshold``; values of another type never meet an ordered condition."""
    if condition in _ORDERED:
        return _number(value) and _number(threshold) and _OPS[condition](value, threshold)
    if _number(value) and _number(threshold):
        return _OPS[condition](float(value), float(threshold))  # type: ignore[arg-type]
    if type(value) is not type(threshold):
        return condition is Comparison.NE
    return _OPS[condition](value, threshold)


def threshold_problem(condition: Comparison, threshold: object) -> str | None:
    """Why a threshold cannot go with a condition (ordered conditions need numbers), or None."""
    if condition in _ORDERED and not _number(threshold):
        return f"condition {condition.value} needs a numeric threshold, got {type(threshold).__name__}"
    return None
