"""schemas/exported/ holds what the code says: regenerate with `make schemas` when a contract changes."""

from pathlib import Path

import msgspec

from telemetry_schemas.export import describe, render

EXPORTED = Path(__file__).resolve().parents[2] / "schemas" / "exported"


def test_exported_schemas_are_current() -> None:
    stale = [
        name
        for name, text in render().items()
        if not (EXPORTED / name).exists() or (EXPORTED / name).read_text() != text
    ]
    assert stale == [], f"run `make schemas`: stale {stale}"


def test_record_points_schema_names_the_required_fields() -> None:
    import json

    schema = json.loads((EXPORTED / "record_points.schema.json").read_text())
    body = schema["$defs"]["RecordPointsSchema"]
    assert body["required"] == ["device_id", "points"]
    assert schema["$defs"]["Point"]["required"] == ["timestamp", "metric_name", "value"]


class _Indented(msgspec.Struct):
    """First line.

    An indented second paragraph, as a docstring in a class body always is.
    """

    x: int


class _Undocumented(msgspec.Struct):
    y: int


class _Outer(msgspec.Struct):
    """Outer."""

    inner: _Indented
    other: list[_Undocumented]


def test_descriptions_come_from_cleaned_docstrings_not_from_msgspec() -> None:
    schema = describe(msgspec.json.schema(_Outer), _Outer)
    defs = schema["$defs"]
    assert (
        defs["_Indented"]["description"]
        == "First line.\n\nAn indented second paragraph, as a docstring in a class body always is."
    )
    assert defs["_Indented"]["title"] == "_Indented"
    assert "description" not in defs["_Undocumented"]
    assert defs["_Outer"]["description"] == "Outer."


def test_describe_overrides_whatever_msgspec_rendered() -> None:
    raw = {"$defs": {"_Indented": {"title": "something else", "description": "    raw, undedented"}}}
    assert describe(raw, _Indented)["$defs"]["_Indented"] == {
        "title": "_Indented",
        "description": "First line.\n\nAn indented second paragraph, as a docstring in a class body always is.",
    }
