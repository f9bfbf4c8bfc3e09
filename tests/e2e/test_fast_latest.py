"""/latest answered in front of Litestar (gateway/fast_latest.py) answers exactly as the Litestar route does.

The session's gateway runs with the fast path (the default); a copy on the same servers runs without it
(TELEMETRY_FAST_LATEST=off). Every request goes to both; status, body and the headers a client reads must match,
and the fast path's own counter shows which of them it answered itself.
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.support.auth import create_key, gateway_copy
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slow(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_copy(stack.servers, tmp_path_factory.mktemp("slow-latest"), TELEMETRY_FAST_LATEST="off") as copy:
        yield copy


def _fast_answers(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.url}/metrics", headers=stack.headers).text
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'telemetry_latest_fast_path_answers_total\{status="(\d+)"\} (\S+)', text)
    }


def _seen(r: httpx.Response) -> tuple[int, bytes, str | None, str | None, str | None]:
    return (
        r.status_code,
        r.content,
        r.headers.get("content-type"),
        r.headers.get("www-authenticate"),
        r.headers.get("retry-after"),
    )


def test_both_ways_answer_the_same(stack: Stack, slow: Stack) -> None:
    device = unique("fast")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    point = {"metric_name": "temperature", "value": 21.5, "unit": "C", "tags": {"room": "a"}, "timestamp": now}
    r = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{device}/telemetry", json=point, headers=stack.headers)
    assert r.status_code == 200, r.text
    base = f"/api/v1/telemetry/devices/{device}/metrics/temperature/latest"
    eventually(lambda: httpx.get(stack.url + base, headers=stack.headers).status_code == 200, what="stored")
    _, read_only = create_key(stack.servers, unique("reader"), "read")
    _, ingest_only = create_key(stack.servers, unique("ingester"), "ingest")
    requests = [
        (base, stack.headers),  # 200, default look-back
        (base + "?lookback=7d", stack.headers),
        (base + "?lookback=3600", {"X-Api-Key": read_only}),
        (base.replace("temperature", "humidity"), stack.headers),  # 404: answered by the fast path too
        (base + "?lookback=bogus", stack.headers),  # 400 from Litestar
        (base + "?lookback=40000d", stack.headers),  # 400: more than 100 years
        (base + "?lookback=1h&extra=1", stack.headers),  # other query parameters: Litestar
        (base.replace(device, "bad.device"), stack.headers),  # 400: not subject-safe
        (base, {}),  # 401
        (base, {"X-Api-Key": "not-a-key-0123456789"}),  # 401
        (base, {"X-Api-Key": ingest_only}),  # 403: ingest scope only
    ]
    before = _fast_answers(stack)
    for path, headers in requests:
        fast = httpx.get(stack.url + path, headers=headers)
        plain = httpx.get(slow.url + path, headers=headers)
        assert _seen(fast) == _seen(plain), path
        assert fast.headers.get("x-request-id"), path
    after = _fast_answers(stack)
    answered = {s: after.get(s, 0) - before.get(s, 0) for s in after}
    assert answered.get("200") == 3 and answered.get("404") == 1, answered  # the rest went to Litestar
    assert fast.status_code == 403


def test_a_request_id_the_client_sends_comes_back(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/api/v1/telemetry/devices/nobody/metrics/temperature/latest",
                  headers={**stack.headers, "X-Request-Id": "trace-me-42"})  # fmt: skip
    assert (r.status_code, r.headers["x-request-id"]) == (404, "trace-me-42")
    assert "no data for metric 'temperature' of device 'nobody'" in r.json()["detail"]
