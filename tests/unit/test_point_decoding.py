"""Each point is validated alone; errors carry the index and the full field path."""

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given

from telemetry_core.value_columns import from_columns, to_columns
from telemetry_schemas import values as values_module
from telemetry_schemas.codecs import decode_points, raw_list_decoder
from telemetry_schemas.fields import MetricName
from telemetry_schemas.text import MAX_JSON_DEPTH
from telemetry_schemas.values import ValueType, value_type
from tests.support.strategies import values


def decode(body: bytes) -> tuple[list, list]:
    return decode_points(raw_list_decoder.decode(body), "data_points")


def test_good_points_survive_bad_neighbours() -> None:
    body = b"""[
      {"timestamp": "2025-12-18T10:00:00Z", "metric_name": "t", "value": 1},
      {"timestamp": "2025-12-18T10:00:00Z", "metric_name": "bad name", "value": 1},
      {"timestamp": "2025-12-18T10:00:00", "metric_name": "t", "value": 1},
      {"timestamp": "2025-12-18T10:00:01Z", "metric_name": "t", "value": null},
      {"timestamp": "2025-12-18T10:00:02Z", "metric_name": "t", "value": {"lat": 91, "lon": 0}},
      {"timestamp": "1970-01-01T00:00:00Z", "metric_name": "t", "value": 1},
      {"timestamp": "2025-12-18T10:00:03Z", "metric_name": "t", "value": 9007199254740993},
      {"metric_name": "t", "value": 1},
      {"timestamp": "2025-12-18T10:00:04Z", "metric_name": "t", "value": "ok", "tags": {"a": "b"}}
    ]"""
    points, errors = decode(body)
    assert [p.value for p in points] == [1, "ok"]
    assert [(e.index, e.field) for e in errors] == [
        (1, "data_points[1].metric_name"),
        (2, "data_points[2].timestamp"),
        (3, "data_points[3].value"),
        (4, "data_points[4].value.lat"),
        (5, "data_points[5].timestamp"),
        (6, "data_points[6].value"),
        (7, "data_points[7]"),
    ]
    assert "timezone" in errors[1].error
    assert "missing required field `timestamp`" in errors[6].error


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, ValueType.BOOLEAN),
        (3, ValueType.INTEGER),
        (2.5, ValueType.FLOAT),
        ("x", ValueType.STRING),
        ({"lat": 1.0, "lon": 2.0}, ValueType.GEOLOCATION),
        ({"lat": 1.0, "lon": 2.0, "alt": 3}, ValueType.GEOLOCATION),
        ({"lat": 1.0}, ValueType.JSON),
        ({"a": [1, {"b": None}]}, ValueType.JSON),
        ([1, "a", {"b": None}], ValueType.JSON),
    ],
)
def test_value_types(value: object, kind: ValueType) -> None:
    assert value_type(value) is kind


@given(values())
def test_value_columns_round_trip(value: object) -> None:
    back = from_columns(*to_columns(value))
    assert back == value
    assert type(back) is type(value)


def test_timestamps_keep_their_instant() -> None:
    (point,), _ = decode(b'[{"timestamp": "2025-12-18T12:00:00+02:00", "metric_name": "t", "value": 1}]')
    assert point.timestamp == datetime(2025, 12, 18, 10, tzinfo=UTC)
    assert msgspec.json.encode(point.timestamp) == b'"2025-12-18T12:00:00+02:00"'


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"value": "a\u0000b"}, "data_points[0].value"),
        ({"value": 1, "unit": "c\u0000"}, "data_points[0].unit"),
        ({"value": 1, "tags": {"k": "v\u0000"}}, "data_points[0].tags.k"),
        ({"value": 1, "tags": {"k\u0000": "v"}}, "data_points[0].tags"),
        ({"value": 1, "metadata": {"a": {"b": ["x\u0000"]}}}, "data_points[0].metadata.a.b[0]"),
        ({"value": 1, "metadata": {"k\u0000": 1}}, "data_points[0].metadata"),
        ({"value": {"nested": {"deep": "\u0000"}}}, "data_points[0].value.nested.deep"),
    ],
)
def test_nul_characters_are_rejected_at_the_edge_naming_the_field(extra: dict, field: str) -> None:
    # PostgreSQL cannot store U+0000 in text or jsonb: accepting it would acknowledge a point that can never land.
    body = {"timestamp": "2025-12-18T10:00:00Z", "metric_name": "t", **extra}
    points, errors = decode(msgspec.json.encode([body]))
    assert points == []
    assert errors[0].field == field
    assert "must not contain the NUL character (\\u0000)" in errors[0].error


@pytest.mark.parametrize("where", ["value", "metadata"])
def test_free_form_json_nested_past_the_limit_is_rejected_with_the_limit(where: str) -> None:
    def nested(depth: int) -> dict:
        out: dict = {"leaf": 1}
        for _ in range(depth - 1):
            out = {"k": out}
        return out

    ok = {"timestamp": "2025-12-18T10:00:00Z", "metric_name": "t", "value": 1, where: nested(MAX_JSON_DEPTH)}
    deep = {**ok, where: nested(MAX_JSON_DEPTH + 1)}
    points, errors = decode(msgspec.json.encode([ok, deep]))
    assert len(points) == 1
    assert [e.index for e in errors] == [1]
    assert errors[0].field.startswith(f"data_points[1].{where}")
    assert f"deeper than {MAX_JSON_DEPTH} levels" in errors[0].error


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    # JSON "C:\\u0000x" is the text C:\u0000x (a backslash, then "u0000"): valid data.
    points, errors = decode(b'[{"timestamp": "2025-12-18T10:00:00Z", "metric_name": "t", "value": "C:\\\\u0000x"}]')
    assert errors == []
    assert points[0].value == "C:\\u0000x"


def test_metric_names_are_checked_after_decoding_in_msgspec_words() -> None:
    # The pattern is no longer run by msgspec per point (values.metric_name_problem, with a cache of valid names):
    # the field and the words of the error are what msgspec said when it ran the pattern itself.
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert("a.b", MetricName)
    words = str(refused.value)
    body = b"""[
      {"timestamp": "2025-12-18T10:00:00Z", "metric_name": "ok:name-1", "value": 1},
      {"timestamp": "2025-12-18T10:00:00Z", "metric_name": "a.b", "value": 1},
      {"timestamp": "1970-01-01T00:00:00Z", "metric_name": "a b", "value": 1},
      {"timestamp": "2025-12-18T10:00:01Z", "metric_name": "ok:name-1", "value": 2},
      {"timestamp": "2025-12-18T10:00:02Z", "metric_name": "a.b", "value": 3}
    ]"""
    for _ in range(2):  # the second pass meets the valid name in the cache; the bad ones were never cached
        points, errors = decode(body)
        assert [p.value for p in points] == [1, 2]
        assert [(e.index, e.field) for e in errors] == [
            (1, "data_points[1].metric_name"), (2, "data_points[2].metric_name"), (4, "data_points[4].metric_name"),
        ]  # fmt: skip
        assert errors[0].error == words and words.startswith("Expected `str` matching regex")


def test_the_cache_of_valid_names_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values_module, "_VALID_NAMES", set())
    monkeypatch.setattr(values_module, "_VALID_NAMES_MAX", 3)
    for i in range(10):
        assert values_module.metric_name_problem(f"m{i}") is None
        assert len(values_module._VALID_NAMES) <= 3
    assert values_module.metric_name_problem("m.x") is not None and "m.x" not in values_module._VALID_NAMES
