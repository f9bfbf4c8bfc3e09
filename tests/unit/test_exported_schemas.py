"""schemas/exported/ holds what the code says: regenerate with `make schemas` when a contract changes."""

from pathlib import Path

from telemetry_schemas.export import render

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
