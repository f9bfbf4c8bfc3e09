"""E1-US2 batch ingestion and E1-US4 idempotent upsert, end to end."""

import gzip
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import lz4.frame
import nats
import pytest
import zstandard

from tests.e2e.conftest import point, stored_rows, wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
BASE = datetime(2025, 12, 18, 10, tzinfo=UTC)


def ts(i: int) -> str:
    return (BASE + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")


def batch_url(device: str) -> str:
    return f"/api/v1/telemetry/devices/{device}/telemetry/batch"


def test_1000_points_are_accepted_and_stored(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    points = [point(value=float(i), ts=ts(i)) for i in range(1000)]
    r = client.post(batch_url(device), json={"data_points": points})
    assert r.status_code == 200
    assert r.json() == {
        "success": True, "ingested_count": 1000, "failed_count": 0, "total_count": 1000,
        "errors": [], "batch_id": None, "detail": None,
    }  # fmt: skip
    rows = wait_rows(servers, device, 1000)
    assert [r[3] for r in rows] == [float(i) for i in range(1000)]


def test_1001_points_are_rejected_whole(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    r = client.post(batch_url(device), json={"data_points": [point(ts=ts(i)) for i in range(1001)]})
    assert r.status_code == 400
    assert r.json() == {"detail": "data_points: has 1001 points; a batch holds at most 1000"}
    r = client.post(batch_url(device), json={"data_points": []})
    assert (r.status_code, r.json()["detail"]) == (422, "data_points: is empty; send between 1 and 1000 points")


def test_bad_points_are_reported_by_index_and_good_ones_stored(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    points = [point(value=i, ts=ts(i)) for i in range(10)]
    points[2]["value"] = None
    points[5]["timestamp"] = "yesterday"
    del points[9]["metric_name"]
    r = client.post(batch_url(device), json={"data_points": points})
    assert r.status_code == 200
    body = r.json()
    assert (body["success"], body["ingested_count"], body["failed_count"], body["total_count"]) == (False, 7, 3, 10)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (2, "data_points[2].value"),
        (5, "data_points[5].timestamp"),
        (9, "data_points[9]"),
    ]
    assert body["detail"].startswith("3 of 10 points rejected: data_points[2].value: Expected")
    rows = wait_rows(servers, device, 7)
    assert [int(r[3]) for r in rows] == [0, 1, 3, 4, 6, 7, 8]


def test_a_batch_with_no_valid_point_is_422(client: httpx.Client) -> None:
    r = client.post(batch_url(unique("dev")), json={"data_points": [{"value": 1}]})
    assert r.status_code == 422
    assert r.json()["failed_count"] == 1
    assert r.json()["detail"] == "1 of 1 points rejected: data_points[0]: Object missing required field `timestamp`"


def test_duplicate_time_device_metric_keeps_the_later_value(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    same = [point(value=1, ts=ts(0)), point(value=2, ts=ts(0)), point(value=3, ts=ts(1))]
    assert client.post(batch_url(device), json={"data_points": same}).status_code == 200
    rows = wait_rows(servers, device, 2)
    assert [r[3] for r in rows] == [2.0, 3.0]
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value="later", ts=ts(1)))
    assert r.status_code == 200
    from tests.support.eventually import eventually

    eventually(lambda: stored_rows(servers, device)[1][4] == "later", what="overwrite")
    assert [(r[3], r[4]) for r in stored_rows(servers, device)] == [(2.0, None), (None, "later")]


async def _messages_on(servers: Servers, subject: str) -> int:
    nc = await nats.connect(servers.nats_url)
    try:
        # POINTS stores telemetry.points.<device> under its slot: telemetry.points.<slot>.<device>.
        stored = subject.replace("telemetry.points.", "telemetry.points.*.", 1)
        info = await nc.jetstream().stream_info("POINTS", subjects_filter=stored)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_same_batch_id_is_stored_once(stack: Stack, servers: Servers) -> None:
    device = unique("dev")
    body = {"data_points": [point(value=i, ts=ts(i)) for i in range(5)], "batch_id": "batch_001"}
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
        for _ in range(3):
            r = await client.post(batch_url(device), json=body)
            assert (r.status_code, r.json()["ingested_count"]) == (200, 5)
        assert await _messages_on(servers, f"telemetry.points.{device}") == 1
        # Same batch_id with corrected content is new data, not a retry: it must not be dropped.
        body["data_points"][0]["value"] = 100
        assert (await client.post(batch_url(device), json=body)).status_code == 200
        assert await _messages_on(servers, f"telemetry.points.{device}") == 2
    from tests.support.eventually import eventually

    eventually(lambda: (rows := stored_rows(servers, device)) and rows[0][3] == 100.0, what="corrected batch stored")


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("zstd", zstandard.ZstdCompressor().compress), ("lz4", lz4.frame.compress)],
)
def test_compressed_bodies(client: httpx.Client, servers: Servers, encoding: str, compress: object) -> None:
    device = unique("dev")
    raw = json.dumps({"data_points": [point(value=i, ts=ts(i)) for i in range(50)]}).encode()
    r = client.post(batch_url(device), content=compress(raw), headers={"Content-Encoding": encoding})  # type: ignore[operator]
    assert (r.status_code, r.json()["ingested_count"]) == (200, 50)
    assert len(wait_rows(servers, device, 50)) == 50


def test_a_zstd_bomb_is_413(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    out = io.BytesIO()  # streamed: the frame declares no content size, 64 MiB of zeros in about 2 KiB
    with zstandard.ZstdCompressor(write_content_size=False).stream_writer(out, closefd=False) as writer:
        for _ in range(64):
            writer.write(bytes(1 << 20))
    r = client.post(batch_url(device), content=out.getvalue(), headers={"Content-Encoding": "zstd"})
    assert (r.status_code, r.json()["detail"]) == (413, f"request body exceeds {16 << 20} bytes (after decompression)")
    assert stored_rows(servers, device) == []


def test_bad_compression_is_a_clear_4xx(client: httpx.Client) -> None:
    url = batch_url(unique("dev"))
    r = client.post(url, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("body could not be decompressed as gzip")
    r = client.post(url, content=b"{}", headers={"Content-Encoding": "br"})
    assert (r.status_code, r.json()["detail"]) == (415, "Content-Encoding 'br' is not supported; use gzip, zstd or lz4")


def test_a_batch_over_the_brokers_message_limit_is_413_not_a_retryable_503(
    client: httpx.Client, servers: Servers
) -> None:
    # Found by the streaming tests: ~1 MB of one device's points gave 503 "retry the request" (MaxPayloadError),
    # which no retry can fix.
    device = unique("dev")
    tags = {f"t{k}": "x" * 250 for k in range(8)}
    r = client.post(batch_url(device), json={"data_points": [point(value=float(i), ts=ts(i), tags=tags)
                                                              for i in range(500)]})  # fmt: skip
    assert r.status_code == 413, r.text
    assert "accepts at most 1048576 bytes per device per request" in r.json()["detail"]
    smaller = client.post(batch_url(device), json={"data_points": [point(value=1.0, ts=ts(0), tags=tags)]})
    assert smaller.json()["ingested_count"] == 1
    assert len(wait_rows(servers, device, 1)) == 1
