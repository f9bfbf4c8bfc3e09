import httpx
import pytest

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
