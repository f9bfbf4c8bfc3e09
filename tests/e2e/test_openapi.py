import re

import httpx
import pytest

from gateway.app import create_app
from telemetry_core.settings import Settings
from telemetry_schemas.fields import SUBJECT_SAFE

pytestmark = pytest.mark.e2e


def test_openapi_documents_every_endpoint_and_request_body(client: httpx.Client) -> None:
    doc = client.get("/schema/openapi.json").json()
    body = doc["paths"]["/api/v1/telemetry/devices/{device_id}/telemetry/batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchBody"}
    point = doc["components"]["schemas"]["Point"]
    assert point["required"] == ["timestamp", "metric_name", "value"]
    assert set(doc["paths"]) >= {
        "/api/v1/telemetry/devices/{device_id}/telemetry",
        "/api/v1/telemetry/bulk",
        "/api/v1/telemetry/query",
        "/health",
    }
    assert httpx.get(str(client.base_url) + "/schema/openapi.json").status_code == 401


# The line-protocol write routes (gateway/routes/line_protocol.py): a text body, errors as InfluxDB reports them.
_TEXT_BODY = {("/api/v2/write", "post"), ("/write", "post")}
_INFLUX_ERROR = {"/api/v2/write": "InfluxV2Error", "/write": "InfluxV1Error"}


def _app_operations() -> set[tuple[str, str]]:
    """(path as the document writes it, method) of every route the gateway serves, from the app itself."""
    app = create_app(Settings.from_env({"NATS_URL": "nats://unused:1", "DATABASE_URL": "postgresql://unused/x"}))
    operations = set()
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if all(h.include_in_schema is False for h in getattr(route, "route_handlers", ())):
            continue  # the web console's page and files (gateway/routes/console.py): not part of the API
        for method in getattr(route, "methods", ()):
            if method not in ("HEAD", "OPTIONS") and not path.startswith("/schema"):
                operations.add((path, method.lower()))
    return operations


def _resolve(doc: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    assert name in doc["components"]["schemas"], f"{ref} is not in the document's components"
    return doc["components"]["schemas"][name]


def test_every_route_and_every_request_body_is_in_the_document(client: httpx.Client) -> None:
    doc = client.get("/schema/openapi.json").json()
    operations = _app_operations()
    documented = {(p, m) for p, item in doc["paths"].items() for m in item if m in ("get", "post", "put", "delete")}
    assert operations == documented
    # Every POST and PUT of this API but the connect-token one takes a body: each must be documented with a
    # schema that resolves.
    no_body = {("/api/v1/telemetry/subscribe/{subscription_id}/token", "post")}
    with_body = sorted((p, m) for p, m in operations if m in ("post", "put") and (p, m) not in no_body | _TEXT_BODY)
    assert len(with_body) == 12
    for path, method in _TEXT_BODY:  # InfluxDB line protocol: text, as Influx clients send it
        body = doc["paths"][path][method]["requestBody"]["content"]
        assert list(body) == ["text/plain"] and body["text/plain"]["schema"]["type"] == "string"
        assert body["text/plain"]["example"].startswith("cpu,cpu=cpu-total,host=server01 usage_idle=97.6")
    for path, method in with_body:
        body = doc["paths"][path][method].get("requestBody")
        assert body is not None, f"{method.upper()} {path} has no request body in the document"
        schema = _resolve(doc, body["content"]["application/json"]["schema"])
        assert schema.get("properties") or schema.get("additionalProperties"), (path, method, schema)
    expected = {
        ("/api/v1/telemetry/devices/{device_id}/telemetry", "post"): "Point",
        ("/api/v1/telemetry/query", "post"): "QueryRequest",
        ("/api/v1/telemetry/metrics", "post"): "MetricDefinitionRequest",
        ("/api/v1/telemetry/subscribe", "post"): "SubscribeRequest",
    }
    for (path, method), name in expected.items():
        schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}
    bulk = doc["paths"]["/api/v1/telemetry/bulk"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert bulk["additionalProperties"]["items"] == {"$ref": "#/components/schemas/Point"}
    batch = doc["components"]["schemas"]["BatchBody"]
    assert batch["properties"]["data_points"]["items"] == {"$ref": "#/components/schemas/Point"}
    assert doc["components"]["schemas"]["MetricDefinitionRequest"]["required"] == ["name", "data_type"]


def test_every_error_answer_is_documented_with_the_body_actually_sent(client: httpx.Client) -> None:
    doc = client.get("/schema/openapi.json").json()
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["detail"]  # never status_code, which is not sent
    assert set(error["properties"]) == {"detail"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            statuses = {int(s) for s in responses}
            assert 503 in statuses, (method, path)
            if not path.startswith("/health"):
                assert {401, 403} <= statuses, (method, path, statuses)
                if op.get("parameters") or "requestBody" in op:  # something to be unreadable
                    assert 400 in statuses, (method, path, statuses)
            if method in ("post", "put") and "requestBody" in op:
                # A text body has no fields: its routes never answer 422 (refused lines are a 400).
                assert {413, 415} | ({422} if path not in _INFLUX_ERROR else set()) <= statuses, (method, path)
                assert 422 not in statuses or path not in _INFLUX_ERROR
            for status, response in responses.items():
                if int(status) >= 400 and not path.startswith("/health"):
                    schema = response["content"]["application/json"]["schema"]
                    name = _INFLUX_ERROR.get(path, "ErrorResponse")
                    assert schema == {"$ref": f"#/components/schemas/{name}"}, (method, path, status)
    ops = doc["paths"]
    assert "404" in ops["/api/v1/telemetry/alerts/rules/{rule_id}"]["get"]["responses"]
    assert "404" in ops["/api/v1/telemetry/export/csv"]["get"]["responses"]
    assert "409" in ops["/api/v1/telemetry/metrics"]["post"]["responses"]
    assert "409" in ops["/api/v1/telemetry/alerts/{alert_id}/acknowledge"]["put"]["responses"]
    assert "404" not in ops["/api/v1/telemetry/devices/{device_id}/metrics"]["get"]["responses"]


def test_ids_bounds_and_the_time_range_rule_are_documented(client: httpx.Client) -> None:
    doc = client.get("/schema/openapi.json").json()
    params = {p["name"]: p for p in doc["paths"]["/api/v1/telemetry/alerts/rules/{rule_id}"]["get"]["parameters"]}
    assert params["rule_id"]["schema"]["pattern"] == SUBJECT_SAFE == "^[A-Za-z0-9_\\-:]+$(?!\\n)"
    assert (params["rule_id"]["schema"]["minLength"], params["rule_id"]["schema"]["maxLength"]) == (1, 128)
    listed = {p["name"]: p for p in doc["paths"]["/api/v1/telemetry/alerts"]["get"]["parameters"]}
    assert listed["offset"]["schema"]["maximum"] == 1_000_000_000
    assert "after start_time" in listed["end_time"]["description"]
    query = doc["components"]["schemas"]["QueryRequest"]["properties"]
    assert "after start_time" in query["end_time"]["description"]
    assert query["offset"]["maximum"] == 1_000_000_000
    rule = doc["components"]["schemas"]["RuleSpec"]["properties"]
    assert rule["name"]["pattern"] == "^[^\\u0000]*$" and rule["name"]["maxLength"] == 200
    # A union is anyOf: with oneOf an integer would match both integer and number and be refused.
    assert "oneOf" not in str(doc["components"]["schemas"]["Point"])
