"""schemas/exported/asyncapi.json: its references resolve, and its subjects and headers are the code's."""

import json
from pathlib import Path
from typing import Any

from telemetry_core.headers import MSG_ID, REQUEST_ID, SIGNATURE
from telemetry_core.topology import dlq_subject, points_subject

EXPORTED = Path(__file__).resolve().parents[2] / "schemas" / "exported"
DOC = json.loads((EXPORTED / "asyncapi.json").read_text())


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(ref: str) -> Any:
    if ref.startswith("./"):
        return json.loads((EXPORTED / ref[2:]).read_text())
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves() -> None:
    refs = _refs(DOC)
    assert "./record_points.schema.json" in refs
    for ref in refs:
        assert _resolve(ref) is not None, ref


def test_subjects_and_headers_are_the_codes() -> None:
    assert DOC["asyncapi"].startswith("3.")
    channels = DOC["channels"]
    assert channels["points"]["address"].replace("{device_id}", "d_1") == points_subject("d_1")
    assert channels["mqttPoints"]["address"].replace("{device_id}", "d_1").replace("/", ".") == points_subject("d_1")
    assert channels["ingestDeadLetters"]["address"] == dlq_subject("ingest")
    headers = DOC["components"]["messages"]["recordPoints"]["headers"]["properties"]
    assert set(headers) == {MSG_ID, REQUEST_ID, SIGNATURE}
