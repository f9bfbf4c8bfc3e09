"""Issue 11, hostile input: every row of its table as a regression test against the real gateway.

Each test sends what an attacker or a fuzzer sent and checks the answer (status and the detail naming the
field) and, where it matters, that nothing was published or stored.
"""

import gzip
import json
import zlib
from typing import Any

import httpx
import lz4.frame
import pytest
import zstandard

from telemetry_schemas.fields import MAX_OFFSET
from telemetry_schemas.text import MAX_JSON_DEPTH
from tests.e2e.conftest import now_iso, point
from tests.support.ids import unique
from tests.support.stack import Stack

API = "/api/v1/telemetry"
NUL = "\x00"
NUL_REASON = "must not contain the NUL character (\\u0000)"


def metric(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_type": "numeric", **extra}


def rule(metric_name: str, **extra: Any) -> dict[str, Any]:
    return {"name": unique("r"), "metric_name": metric_name, "condition": ">", "threshold_value": 1, **extra}


def nested(depth: int, leaf: Any = 1) -> Any:
    """A JSON object nested ``depth`` levels deep."""
    out: Any = {"leaf": leaf}
    for _ in range(depth - 1):
        out = {"k": out}
    return out


# ---- \u0000 in every text field of every body: 422 naming the field, nothing published --------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"description": f"a{NUL}b"}, "description"),
        ({"unit": f"c{NUL}"}, "unit"),
        ({"tags": ["ok", f"t{NUL}"]}, "tags[1]"),
        ({"metadata": {"owner": {"team": f"x{NUL}"}}}, "metadata.owner.team"),
        ({"metadata": {f"k{NUL}": 1}}, "metadata"),
    ],
)
def test_nul_in_a_metric_definition_is_422_and_nothing_is_defined(
    client: httpx.Client, extra: dict, field: str
) -> None:
    name = unique("m")
    r = client.post(f"{API}/metrics", json=metric(name, **extra))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}: ") and NUL_REASON in r.json()["detail"]
    assert client.get(f"{API}/metrics/{name}").status_code == 404


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"name": f"rule{NUL}"}, "name"),
        ({"description": f"d{NUL}"}, "description"),
        ({"device_groups": [f"g{NUL}"]}, "device_groups[0]"),
        ({"device_tags": {"site": f"s{NUL}"}}, "device_tags[...]"),
        ({"notification_channels": [f"c{NUL}"]}, "notification_channels[0]"),
        ({"tags": [f"t{NUL}"]}, "tags[0]"),
        ({"condition": "==", "threshold_value": f"on{NUL}"}, "threshold_value"),
    ],
)
def test_nul_in_an_alert_rule_is_422_and_no_rule_exists(client: httpx.Client, extra: dict, field: str) -> None:
    watched = unique("m")
    r = client.post(f"{API}/alerts/rules", json=rule(watched, **extra))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}: ") and NUL_REASON in r.json()["detail"]
    listed = client.get(f"{API}/alerts/rules", params={"metric_name": watched}).json()
    assert listed["total"] == 0  # nothing was published: no event, no read-model row, nothing for the engine


def test_nul_in_the_other_bodies_is_422_naming_the_field(client: httpx.Client) -> None:
    now = now_iso()
    cases = [
        ("put", f"{API}/alerts/rules/{unique('rule')}", rule("m", name=f"x{NUL}"), "name"),
        ("post", f"{API}/alerts/rules/backtest",
         {"rule": rule("m", name=f"x{NUL}"), "start_time": now, "end_time": now}, "rule.name"),
        ("put", f"{API}/alerts/{unique('alert')}/acknowledge", {"note": f"n{NUL}"}, "note"),
        ("put", f"{API}/alerts/{unique('alert')}/resolve", {"note": f"n{NUL}"}, "note"),
        ("post", f"{API}/query",
         {"metrics": ["m"], "start_time": now, "end_time": now, "filters": {"site": f"a{NUL}"}}, "filters.site"),
        ("post", f"{API}/devices/{unique('dev')}/telemetry", point(unit=f"u{NUL}"), "unit"),
        ("post", f"{API}/devices/{unique('dev')}/telemetry", point(value=f"v{NUL}"), "value"),
        ("post", f"{API}/devices/{unique('dev')}/telemetry", point(metadata={"a": [f"{NUL}"]}), "metadata.a[0]"),
        ("post", f"{API}/devices/{unique('dev')}/telemetry/batch",
         {"data_points": [point()], "batch_id": f"b{NUL}"}, "batch_id"),
    ]  # fmt: skip
    for method, url, body, field in cases:
        r = client.request(method.upper(), url, json=body)
        assert r.status_code == 422, (url, body, r.text)
        assert r.json()["detail"].startswith(f"{field}: "), (url, r.json())
        assert NUL_REASON in r.json()["detail"], (url, r.json())


def test_a_nul_point_in_a_batch_is_rejected_by_index_and_the_others_are_stored(client: httpx.Client) -> None:
    device = unique("dev")
    body = {"data_points": [point(value=1), point(metric="t2", unit=f"u{NUL}")]}
    r = client.post(f"{API}/devices/{device}/telemetry/batch", json=body)
    assert r.status_code == 200
    assert (r.json()["ingested_count"], r.json()["errors"][0]["field"]) == (1, "data_points[1].unit")


# ---- JSON nested deeper than the limit: 400/422 with the limit, never a 500 ----------------------------------


@pytest.mark.parametrize("where", ["value", "metadata"])
def test_json_nested_past_the_limit_is_422_naming_the_limit(client: httpx.Client, where: str) -> None:
    url = f"{API}/devices/{unique('dev')}/telemetry"
    assert client.post(url, json={**point(), where: nested(MAX_JSON_DEPTH)}).status_code == 200
    r = client.post(url, json={**point(), where: nested(MAX_JSON_DEPTH + 1)})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(where) and f"deeper than {MAX_JSON_DEPTH} levels" in r.json()["detail"]


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
@pytest.mark.parametrize("where", ["value", "metadata"])
def test_json_nested_thousands_deep_is_400_with_the_limit(client: httpx.Client, where: str, depth: int) -> None:
    # Too deep for the decoder itself (RecursionError before): refused as unreadable, never a 500.
    deep = ("[" * depth + "]" * depth).encode()
    body = json.dumps(point(**{where: "PLACEHOLDER"})).encode().replace(b'"PLACEHOLDER"', deep)
    for url, content in (
        (f"{API}/devices/{unique('dev')}/telemetry", body),
        (f"{API}/devices/{unique('dev')}/telemetry/batch", b'{"data_points": [' + body + b"]}"),
        (f"{API}/bulk", b'{"dev_a": [' + body + b"]}"),
    ):
        r = client.post(url, content=content, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422), (url, r.status_code, r.text[:200])
        assert str(MAX_JSON_DEPTH) in r.json()["detail"], r.json()


def test_deep_json_in_control_plane_bodies_is_refused(client: httpx.Client) -> None:
    now = now_iso()
    r = client.post(f"{API}/metrics", json=metric(unique("m"), metadata=nested(MAX_JSON_DEPTH + 5)))
    assert r.status_code == 422 and f"deeper than {MAX_JSON_DEPTH}" in r.json()["detail"]
    deep = b"[" * 50_000 + b"]" * 50_000
    body = b'{"metrics": ["m"], "start_time": "%s", "end_time": "%s", "filters": {"a": %s}}' % (
        now.encode(), now.encode(), deep,
    )  # fmt: skip
    r = client.post(f"{API}/query", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and str(MAX_JSON_DEPTH) in r.json()["detail"]


# ---- integers bounded ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [f"{API}/metrics", f"{API}/alerts/rules", f"{API}/alerts"])
@pytest.mark.parametrize("offset", [MAX_OFFSET + 1, 2**63, 2**64 + 5, 10**40])
def test_huge_offsets_are_422_naming_offset(client: httpx.Client, path: str, offset: int) -> None:
    r = client.get(path, params={"offset": offset})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("offset: ") and str(MAX_OFFSET) in r.json()["detail"]
    assert client.get(path, params={"offset": MAX_OFFSET}).json()["count"] == 0


@pytest.mark.parametrize("offset", [MAX_OFFSET + 1, 2**63, 10**40])
def test_a_huge_query_offset_is_422(client: httpx.Client, offset: int) -> None:
    now = now_iso()
    body = {"metrics": ["m"], "start_time": now_iso(-60), "end_time": now, "offset": offset}
    r = client.post(f"{API}/query", json=body)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("offset: ")


def test_a_huge_integer_threshold_is_422(client: httpx.Client) -> None:
    r = client.post(f"{API}/alerts/rules", json=rule("m", threshold_value=2**63))
    assert r.status_code == 422 and r.json()["detail"].startswith("threshold_value")


# ---- compressed bodies: trailing junk is an error ------------------------------------------------------------


def _query_body() -> bytes:
    return json.dumps({"metrics": ["m"], "start_time": now_iso(-60), "end_time": now_iso()}).encode()


@pytest.mark.parametrize(
    ("encoding", "compress", "junk"),
    [
        ("gzip", gzip.compress, gzip.compress(b"garbage that is not JSON", mtime=0)),  # a second, well-formed member
        ("gzip", gzip.compress, b"\x00\x01junk"),  # bytes that are no gzip member at all
        ("gzip", lambda b: gzip.compress(b)[:-6], b""),  # truncated stream
        ("deflate", zlib.compress, b"junk"),
        ("lz4", lz4.frame.compress, b"junk after the frame"),
        ("zstd", zstandard.ZstdCompressor().compress, b"junk after the frame"),
    ],
)
def test_compressed_json_followed_by_junk_is_400(
    client: httpx.Client, encoding: str, compress: Any, junk: bytes
) -> None:
    good = compress(_query_body())
    if junk:
        ok = client.post(f"{API}/query", content=good, headers={"Content-Encoding": encoding})
        assert ok.status_code == 200, ok.text
    r = client.post(f"{API}/query", content=good + junk, headers={"Content-Encoding": encoding})
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(("body could not be decompressed", "body is not valid JSON"))


def test_a_multi_member_gzip_body_is_read_whole(client: httpx.Client) -> None:
    body = _query_body()
    half = len(body) // 2
    r = client.post(
        f"{API}/query", content=gzip.compress(body[:half]) + gzip.compress(body[half:]),
        headers={"Content-Encoding": "gzip"},
    )  # fmt: skip
    assert r.status_code == 200, r.text


# ---- query-parameter errors: 422 naming the parameter and the allowed values, never the URL ----------------


@pytest.mark.parametrize(
    ("path", "params", "name", "allowed"),
    [
        ("/aggregated", {"metric_name": "m", "aggregation_type": "bogus", "interval": 60,
                         "start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"},
         "aggregation_type", "avg, min, max, sum, count, median, p95, p99"),
        ("/metrics", {"limit": "abc"}, "limit", None),
        ("/alerts", {"status": "bogus"}, "status", "active, acknowledged, resolved"),
        ("/alerts", {"level": "bogus"}, "level", "info, warning, error, critical, emergency"),
        ("/alerts/rules", {"enabled": "maybe"}, "enabled", None),
        ("/devices/d1/metrics/m/range", {"time_range": "2d"}, "time_range", "1h, 6h, 24h, 7d, 30d, 90d"),
    ],
)  # fmt: skip
def test_parameter_errors_name_the_parameter(
    client: httpx.Client, path: str, params: dict, name: str, allowed: str | None
) -> None:
    r = client.get(API + path, params=params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"{name}: ")
    if allowed:
        assert detail.endswith(f"allowed values: {allowed}")
    assert "http" not in detail and "?" not in detail and path not in detail  # the URL is not echoed


def test_a_missing_required_parameter_is_named(client: httpx.Client) -> None:
    r = client.get(
        f"{API}/aggregated",
        params={"metric_name": "m", "aggregation_type": "avg", "interval": 60, "end_time": "2025-01-02T00:00:00Z"},
    )
    assert (r.status_code, r.json()["detail"]) == (422, "start_time: required query parameter is missing")


# ---- batches, methods, health -----------------------------------------------------------------------------


def test_empty_data_points_is_422(client: httpx.Client) -> None:
    r = client.post(f"{API}/devices/{unique('dev')}/telemetry/batch", json={"data_points": []})
    assert (r.status_code, r.json()) == (422, {"detail": "data_points: is empty; send between 1 and 1000 points"})
    r = client.post(f"{API}/bulk", json={})
    assert r.status_code == 422


def test_a_wrong_method_is_405_with_allow(client: httpx.Client) -> None:
    r = client.patch(f"{API}/metrics")
    assert r.status_code == 405
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert "detail" in r.json()
    r = client.delete(f"{API}/query")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


def test_health_is_minimal_and_details_need_a_key(stack: Stack) -> None:
    health = httpx.get(f"{stack.url}/health", timeout=10)
    assert health.status_code == 200
    assert set(health.json()) <= {"status", "service", "port", "version", "detail"}
    assert health.json()["status"] == "healthy"
    anonymous = httpx.get(f"{stack.url}/health/detailed", timeout=10)
    assert anonymous.status_code == 401
    assert "components" not in anonymous.text and "ingest" not in anonymous.text
    keyed = httpx.get(f"{stack.url}/health/detailed", headers=stack.headers, timeout=10)
    assert keyed.status_code == 200 and "data_ingestion" in keyed.json()["components"]


def test_the_operator_can_make_health_details_public(stack: Stack) -> None:
    public = Stack(stack.servers, stack.log_dir, extra_env={"TELEMETRY_PUBLIC_HEALTH_DETAILS": "true"})
    public.start("gateway", label="gateway-public-health")
    try:
        public.wait_healthy()
        r = httpx.get(f"{public.url}/health/detailed", timeout=10)
        assert r.status_code == 200 and "data_ingestion" in r.json()["components"]
        assert httpx.get(f"{public.url}{API}/metrics", timeout=10).status_code == 401  # only the health details
    finally:
        public.stop_all()


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/alerts", {}),
        ("/aggregated", {"metric_name": "m", "aggregation_type": "avg", "interval": 60}),
        ("/export/csv", {"device_ids": "d1", "metric_names": "m"}),
    ],
)
@pytest.mark.parametrize("bad", ["0.5", "1734516000", "2025-12-18T10:00:00"])
def test_query_timestamps_must_be_rfc3339_with_a_zone(client: httpx.Client, path: str, params: dict, bad: str) -> None:
    # Found by schemathesis: a number was taken as epoch seconds although the document says date-time.
    times = {"start_time": bad, "end_time": "2025-12-19T00:00:00Z"}
    r = client.get(API + path, params={**params, **times})
    assert (r.status_code, r.json()["detail"]) == (
        400,
        "start_time: must be RFC 3339 with a zone, e.g. 2025-12-18T00:00:00Z",
    )


@pytest.mark.parametrize("device", ["dev%0A", "dev%0D%0A", "a%0Ab"])
def test_a_line_break_in_a_device_id_is_400_and_never_reaches_a_subject(client: httpx.Client, device: str) -> None:
    # Python's `$` matches before a final newline: the identifier rule let "dev\n" through into a NATS subject.
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point())
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("device_id ") and "is invalid" in r.json()["detail"]
    r = client.post("/api/v1/telemetry/devices/dev_ok/telemetry", json=point(metric="temp\n"))
    assert r.status_code == 422 and r.json()["detail"].startswith("metric_name: Expected `str` matching regex"), r.text
