"""/latest and /query answered in front of Litestar (gateway/fast_reads.py) answer exactly as the Litestar routes do.

The session's gateway runs with the fast path (the default); a copy on the same servers runs without it
(TELEMETRY_FAST_READS=off). Every request goes to both; status, body and the headers a client reads must match,
and the fast path's own counter shows which of them it answered itself.
"""

import gzip
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.auth import create_key, gateway_copy
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slow(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The same settings as the session's gateway (e.g. its percentile threshold), the fast path off.
    env = {**stack.extra_env, "TELEMETRY_FAST_READS": "off"}
    with gateway_copy(stack.servers, tmp_path_factory.mktemp("no-fast-reads"), **env) as copy:
        yield copy


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    return {scope: create_key(stack.servers, unique(scope), scope)[1] for scope in ("read", "ingest")}


@pytest.fixture(scope="module")
def device(stack: Stack) -> str:
    """A device with two hours of points, stored and in the hourly rollup."""
    device = unique("fast")
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    points = [
        {"metric_name": "temperature", "value": 20.0 + i, "unit": "C", "tags": {"room": "a"},
         "timestamp": (now - timedelta(minutes=10 * i)).isoformat().replace("+00:00", "Z")}
        for i in range(12)
    ]  # fmt: skip
    r = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points},
                   headers=stack.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    latest = f"{stack.url}/api/v1/telemetry/devices/{device}/metrics/temperature/latest"
    eventually(lambda: httpx.get(latest, headers=stack.headers).status_code == 200, what="stored")
    return device


def _fast_answers(stack: Stack) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{stack.url}/metrics", headers=stack.headers).text
    found = re.finditer(r'telemetry_fast_read_answers_total\{route="([^"]+)",status="(\d+)"\} (\S+)', text)
    return {(m[1].rsplit("/", 1)[1], m[2]): float(m[3]) for m in found}


def _seen(r: httpx.Response) -> tuple[Any, ...]:
    h = r.headers
    return r.status_code, r.content, h.get("content-type"), h.get("www-authenticate"), h.get("retry-after")


def _answered(stack: Stack, before: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    after = _fast_answers(stack)
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def test_latest_both_ways_answer_the_same(stack: Stack, slow: Stack, keys: dict[str, str], device: str) -> None:
    base = f"/api/v1/telemetry/devices/{device}/metrics/temperature/latest"
    requests = [
        (base, stack.headers),  # 200, default look-back
        (base + "?lookback=7d", stack.headers),
        (base + "?lookback=3600", {"X-Api-Key": keys["read"]}),
        (base.replace("temperature", "humidity"), stack.headers),  # 404: answered by the fast path too
        (base + "?lookback=bogus", stack.headers),  # 400 from Litestar
        (base + "?lookback=40000d", stack.headers),  # 400: more than 100 years
        (base + "?lookback=1h&extra=1", stack.headers),  # other query parameters: Litestar
        (base.replace(device, "bad.device"), stack.headers),  # 400: not subject-safe
        (base, {}),  # 401
        (base, {"X-Api-Key": "not-a-key-0123456789"}),  # 401
        (base, {"X-Api-Key": keys["ingest"]}),  # 403: ingest scope only
    ]
    before = _fast_answers(stack)
    for path, headers in requests:
        fast = httpx.get(stack.url + path, headers=headers)
        plain = httpx.get(slow.url + path, headers=headers)
        assert _seen(fast) == _seen(plain), path
        assert fast.headers.get("x-request-id"), path
    assert _answered(stack, before) == {("latest", "200"): 3, ("latest", "404"): 1}  # the rest went to Litestar


def test_query_both_ways_answer_the_same(stack: Stack, slow: Stack, keys: dict[str, str], device: str) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    span = {"start_time": (now - timedelta(hours=2)).isoformat(), "end_time": (now + timedelta(hours=1)).isoformat()}
    hourly = {"devices": [device], "metrics": ["temperature"], **span, "aggregation": "avg", "interval": 3600}
    json_type = {"Content-Type": "application/json"}
    bodies: list[tuple[bytes, dict[str, str]]] = [
        (json.dumps(hourly).encode(), stack.headers),  # 200 from the hourly rollup (q2)
        (json.dumps({"devices": [device], "metrics": ["temperature"], **span}).encode(), stack.headers),  # raw
        (json.dumps({**hourly, "aggregation": "p95"}).encode(), {"X-Api-Key": keys["read"]}),
        (json.dumps({**hourly, "end_time": hourly["start_time"]}).encode(), stack.headers),  # 422 from the answer
        (json.dumps({**hourly, "interval": 1, "limit": 5}).encode(), stack.headers),  # 422: too many buckets
        (json.dumps({**hourly, "aggregation": "mode"}).encode(), stack.headers),  # 422 from the body's decoding
        (b"{not json", stack.headers),  # 400
        (gzip.compress(json.dumps(hourly).encode()), {**stack.headers, "Content-Encoding": "gzip"}),  # Litestar
        (json.dumps(hourly).encode(), {}),  # 401
        (json.dumps(hourly).encode(), {"X-Api-Key": keys["ingest"]}),  # 403
    ]
    before = _fast_answers(stack)
    for body, headers in bodies:
        fast = httpx.post(f"{stack.url}/api/v1/telemetry/query", content=body, headers={**json_type, **headers})
        plain = httpx.post(f"{slow.url}/api/v1/telemetry/query", content=body, headers={**json_type, **headers})
        assert _seen(fast) == _seen(plain), body[:120]
        assert fast.headers.get("x-request-id")
    first = httpx.post(f"{stack.url}/api/v1/telemetry/query", json=hourly, headers=stack.headers).json()
    assert (first["source"], first["count"]) == ("rollup_hour", 3)  # the comparison above saw real answers
    assert _answered(stack, before) == {("query", "200"): 4, ("query", "422"): 2}


def test_a_request_id_the_client_sends_comes_back(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/api/v1/telemetry/devices/nobody/metrics/temperature/latest",
                  headers={**stack.headers, "X-Request-Id": "trace-me-42"})  # fmt: skip
    assert (r.status_code, r.headers["x-request-id"]) == (404, "trace-me-42")
    assert "no data for metric 'temperature' of device 'nobody'" in r.json()["detail"]
