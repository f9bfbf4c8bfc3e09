"""filter_condition: what parses, what it selects, and that nothing is ever evaluated as code."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.live.condition import ConditionError, parse_condition


def fields(value: Any = 25.0, **extra: Any) -> dict[str, Any]:
    return {"device_id": "d1", "metric_name": "temperature", "value": value, "unit": None, "tags": {}, **extra}


@pytest.mark.parametrize(
    ("condition", "point", "expected"),
    [
        ("value > 25", fields(25.5), True),
        ("value > 25", fields(25), False),
        ("value >= 25", fields(25), True),
        ("value != 3", fields(4), True),
        ("value > -1.5e1", fields(-10), True),
        ("value == 'on'", fields("on"), True),
        ('value == "o\\"n"', fields('o"n'), True),
        ("value > 25", fields("hot"), False),  # text against a number: false, never an error
        ("value > 'a'", fields("b"), False),  # text orders only for equality
        ("value == true", fields(True), True),
        ("value == 1", fields(True), False),  # a bool is not the number 1
        ("tags.site == 'north'", fields(tags={"site": "north"}), True),
        ("tags.site == 'north'", fields(), False),  # missing tag
        ("metric_name == 'temperature' and device_id == 'd1'", fields(), True),
        ("value < 0 or unit == 'C'", fields(5, unit="C"), True),
        ("not value > 30", fields(5), True),
        ("NOT (value > 1 AND value < 10)", fields(5), False),
        ("(value > 1) and ((value < 10))", fields(5), True),
    ],
)
def test_condition_selects(condition: str, point: dict[str, Any], expected: bool) -> None:
    assert parse_condition(condition)(point) is expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("", "condition is empty"),
        ("value >", "unexpected end of condition at position 7"),
        ("value > 25 or", "unexpected end of condition at position 13"),
        ("value 25", "expected a comparison (== != > >= < <=) at position 6, got '25'"),
        ("__import__('os').system('x') == 1", "unexpected character '.' at position 16"),
        ("__import__ == 1", "unknown name '__import__' at position 0"),
        ("value > 25; drop", "unexpected character ';' at position 10"),
        ("(value > 1", "unexpected end of condition at position 10"),
        ("value > 1)", "unexpected ')' at position 9"),
        ("value + 1 > 2", "unexpected character '+' at position 6"),
        ("temperature > 1", "unknown name 'temperature' at position 0"),
        ("value > 1e999", "number '1e999' at position 8 is out of range"),
        ("not " * 40 + "value > 1", "condition nests deeper than 32 levels"),
    ],
)
def test_bad_conditions_say_what_and_where(condition: str, message: str) -> None:
    with pytest.raises(ConditionError) as raised:
        parse_condition(condition)
    assert str(raised.value).startswith(message), str(raised.value)


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_condition_error_only(source: str) -> None:
    try:
        predicate = parse_condition(source)
    except ConditionError:
        return
    assert predicate(fields()) in (True, False)
