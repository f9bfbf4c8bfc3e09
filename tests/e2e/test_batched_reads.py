"""Concurrent one-series queries through the running gateway, whose read pool batches them (series_batches.py).

Every answer is compared with the hourly averages computed here from telemetry.points, and the gateway's /metrics
shows that its batched reads answered each of them (the feature is wired into the gateway, not only importable).
"""

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.times import iso

pytestmark = pytest.mark.e2e

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
START = END - timedelta(hours=6)
DEVICES, METRICS = 12, ("temperature", "humidity")


def observed(client: httpx.Client, what: str) -> float:
    found = re.search(rf"^telemetry_query_batch_requests_{what} ([0-9.e+]+)$", client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def expected(servers: Servers, devices: list[str]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """Hourly averages of each series from the raw points."""
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, metric_name, date_trunc('hour', time), avg(value_num) FROM telemetry.points "
            "WHERE device_id = ANY(%s) AND time >= %s AND time < %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (devices, START, END),
        ).fetchall()
    out: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for d, m, t, v in rows:
        out.setdefault((d, m), []).append((iso(t.astimezone(UTC)), v))
    return out


async def ask_all(stack: Stack, series: list[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=30) as client:

        async def one(device: str, metric: str) -> list[tuple[str, float]]:
            body = {"devices": [device], "metrics": [metric], "start_time": iso(START), "end_time": iso(END),
                    "aggregation": "avg", "interval": 3600}  # fmt: skip
            r = await client.post("/api/v1/telemetry/query", json=body)
            assert r.status_code == 200, r.text
            return [(p["timestamp"].replace("+00:00", "Z"), p["value"]) for p in r.json()["data_points"]]

        answers = await asyncio.gather(*(one(d, m) for d, m in series))
    return dict(zip(series, answers, strict=True))


def test_concurrent_one_series_queries_answer_from_batched_reads(
    client: httpx.Client, servers: Servers, stack: Stack
) -> None:
    devices = [unique("batched") for _ in range(DEVICES)]
    for i, device in enumerate(devices):
        points = [{"timestamp": iso(START + timedelta(minutes=17 * k)), "metric_name": metric, "value": i + k * 0.5 + j}
                  for k in range(21) for j, metric in enumerate(METRICS)]  # fmt: skip
        r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
        assert r.status_code == 200 and r.json()["ingested_count"] == len(points), r.text
    want = eventually(lambda: (e := expected(servers, devices)) and sum(map(len, e.values())) == DEVICES * 12 and e,
                      timeout=30, what="every point stored")  # fmt: skip
    series = [(d, m) for d in devices for m in METRICS]
    count0, sum0 = observed(client, "count"), observed(client, "sum")
    # Each series asked once, all at once: none can be a query-cache hit, so each is read through the batches.
    got = asyncio.run(ask_all(stack, series))
    assert got == want
    assert observed(client, "sum") - sum0 == len(series), "every request answered by the batched reads"
    assert 1 <= observed(client, "count") - count0 <= len(series)
