"""The single-point POST answered in front of Litestar (gateway/fast_ingest.py) answers exactly as the route does.

The session's gateway runs with the fast path (the default); a copy on the same servers runs without it
(TELEMETRY_FAST_INGEST=off). Every request goes to both; status, body and the headers a client reads must match,
and the fast path's own counter shows which of them it answered itself. What it accepted is stored, with the
request id on the published message.
"""

import asyncio
import gzip
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import pytest

from telemetry_core.headers import REQUEST_ID
from telemetry_core.topology import POINTS_STREAM, slot_of
from tests.e2e.conftest import wait_rows
from tests.support.auth import create_key, gateway_copy
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

POINT = {"timestamp": "2031-05-01T00:00:00Z", "metric_name": "temperature", "value": 21.5, "unit": "C"}


@pytest.fixture(scope="module")
def slow(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**stack.extra_env, "TELEMETRY_FAST_INGEST": "off"}
    with gateway_copy(stack.servers, tmp_path_factory.mktemp("no-fast-ingest"), **env) as copy:
        yield copy


def _fast_answers(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.url}/metrics", headers=stack.headers).text
    found = re.finditer(r'telemetry_fast_ingest_answers_total\{route="[^"]+",status="(\d+)"\} (\S+)', text)
    return {m[1]: float(m[2]) for m in found}


def _seen(r: httpx.Response) -> tuple[Any, ...]:
    h = r.headers
    return r.status_code, r.content, h.get("content-type"), h.get("www-authenticate"), h.get("retry-after")


def test_single_point_both_ways_answer_the_same(stack: Stack, slow: Stack) -> None:
    device, other = unique("fi"), unique("fi")
    keys = {scope: create_key(stack.servers, unique(scope), scope)[1] for scope in ("read", "ingest")}
    own = create_key(stack.servers, unique("own"), "ingest", devices=device)[1]
    body = json.dumps(POINT).encode()
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        (device, body, stack.headers),  # 200
        (device, json.dumps({**POINT, "value": 22}).encode(), {"X-Api-Key": keys["ingest"]}),  # 200
        (device, body, {"X-Api-Key": own}),  # 200: a key limited to this device
        (device, json.dumps({**POINT, "timestamp": "yesterday"}).encode(), stack.headers),  # 422
        (device, json.dumps({"timestamp": POINT["timestamp"], "value": 1}).encode(), stack.headers),  # 422
        (device, b"{not json", stack.headers),  # 400
        (device, b"", stack.headers),  # 400: empty
        (other, body, {"X-Api-Key": own}),  # 403 from Litestar: not this key's device
        (device, gzip.compress(body), {**stack.headers, "Content-Encoding": "gzip"}),  # 200 from Litestar
        (device, body, {**stack.headers, "Content-Type": "text/plain"}),  # Litestar
        ("bad.device", body, stack.headers),  # 400 from Litestar: not subject-safe
        (device, body, {}),  # 401
        (device, body, {"X-Api-Key": "not-a-key-0123456789"}),  # 401
        (device, body, {"X-Api-Key": keys["read"]}),  # 403: read scope only
    ]
    before = _fast_answers(stack)
    for target, content, headers in cases:
        path = f"/api/v1/telemetry/devices/{target}/telemetry"
        fast = httpx.post(stack.url + path, content=content, headers={**json_type, **headers})
        plain = httpx.post(slow.url + path, content=content, headers={**json_type, **headers})
        assert _seen(fast) == _seen(plain), (target, content[:80], headers)
        assert fast.headers.get("x-request-id")
    answered = {k: v - before.get(k, 0) for k, v in _fast_answers(stack).items() if v - before.get(k, 0)}
    assert answered == {"200": 3, "422": 2, "400": 2}  # the rest went to Litestar
    ok = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{device}/telemetry", json=POINT, headers=stack.headers)
    assert ok.json() == {"success": True, "message": "Data point ingested successfully", "device_id": device,
                         "metric_name": "temperature"}  # fmt: skip


def test_an_accepted_point_is_stored_and_its_message_carries_the_request_id(stack: Stack, servers: Servers) -> None:
    device = unique("fi")
    r = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{device}/telemetry", json=POINT,
                   headers={**stack.headers, "X-Request-Id": "trace-fast-ingest-1"})  # fmt: skip
    assert (r.status_code, r.headers["x-request-id"]) == (200, "trace-fast-ingest-1")
    (row,) = wait_rows(servers, device, 1)
    assert row[3] == 21.5
    assert asyncio.run(_request_id_on_message(servers, device)) == "trace-fast-ingest-1"


def test_a_request_id_the_gateway_made_is_not_carried_on_the_message(stack: Stack, servers: Servers) -> None:
    # Only a client's own id asks to be traced: a made-up one on the message would make every worker log a line
    # per batch for nobody (docs/architecture.md, "Request id").
    single, batch = unique("fi"), unique("fi")
    r = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{single}/telemetry", json=POINT, headers=stack.headers)
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    r = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{batch}/telemetry/batch", json={"data_points": [POINT]},
                   headers=stack.headers)  # fmt: skip
    assert r.status_code == 200 and r.headers["x-request-id"]
    for device in (single, batch):
        wait_rows(servers, device, 1)
        assert asyncio.run(_request_id_on_message(servers, device)) is None
    r = httpx.post(f"{stack.url}/api/v1/telemetry/devices/{batch}/telemetry/batch", json={"data_points": [POINT]},
                   headers={**stack.headers, "X-Request-Id": "trace-batch-1"})  # fmt: skip
    assert r.status_code == 200
    assert asyncio.run(_request_id_on_message(servers, batch)) == "trace-batch-1"


async def _request_id_on_message(servers: Servers, device: str) -> str | None:
    nc = await nats.connect(servers.nats_url)
    try:
        msg = await nc.jetstream().get_last_msg(POINTS_STREAM, f"telemetry.points.{slot_of(device)}.{device}")
    finally:
        await nc.close()
    return (msg.headers or {}).get(REQUEST_ID)
