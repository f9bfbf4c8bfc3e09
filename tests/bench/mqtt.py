"""MQTT devices (QoS 1) against HTTP batches: points/s acknowledged and points/s stored in PostgreSQL.

One nats-server with its MQTT listener, one PostgreSQL, the whole stack (gateway and workers). Per round,
the same number of points goes in once as HTTP batches (500 points per request, 4 concurrent
clients) and once as MQTT QoS 1 messages of 500 points each (RecordPoints JSON on
telemetry/points/<device>, one paho client, paho's default 20 in flight); rounds alternate
which goes first. "Acked" stops the clock at the last 200 / PUBACK; "stored" at the last row in PostgreSQL
(ingest worker: validation, signing the re-publish for MQTT, the write).

``python -m tests.bench.mqtt`` (own servers, a few minutes); writes docs/benchmarks-mqtt.md.
Knobs: BENCH_MQTT_ROUNDS (4), BENCH_MQTT_POINTS (20000 per round and path).
"""

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
import uvloop

from telemetry_core.embedded import free_port, nats_server_binary, start_nats, start_postgres
from telemetry_core.migrate import migrate
from tests.bench.client import make_client
from tests.bench.data import PointMaker, hour_ago
from tests.bench.e2e import build_batches, post_batches
from tests.bench.scratch import scratch_dir
from tests.support.mqtt import mqtt_device, points_topic
from tests.support.servers import Servers
from tests.support.stack import Stack

BATCH = 500
CONCURRENCY = 4
DEVICES = 8
REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-mqtt.md"


@dataclass
class Result:
    rounds: int
    points: int
    acked: dict[str, list[float]] = field(default_factory=dict)
    stored: dict[str, list[float]] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _stored(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry.points WHERE device_id LIKE %s", (f"{prefix}-%",)).fetchone()
        return int(row[0]) if row else 0


def _wait_stored(database_url: str, prefix: str, points: int, deadline_s: float = 600) -> float:
    """The moment (perf_counter) the last of ``points`` rows of ``prefix`` is in PostgreSQL."""
    deadline = time.monotonic() + deadline_s
    while (n := _stored(database_url, prefix)) < points:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{prefix}: only {n} of {points} points stored within {deadline_s}s")
        time.sleep(0.05)
    return time.perf_counter()


async def _http(stack: Stack, prefix: str, points: int) -> tuple[float, float]:
    client = make_client("httpx", stack.url, stack.headers, CONCURRENCY)
    try:
        batches = build_batches(prefix, points, BATCH, devices=DEVICES)
        start = time.perf_counter()
        acked = await post_batches(client, batches, CONCURRENCY)
        acked_at = time.perf_counter()
    finally:
        await client.aclose()
    if acked != points:
        raise RuntimeError(f"{prefix}: {acked} of {points} points acknowledged")
    stored_at = _wait_stored(stack.servers.database_url, prefix, points)
    return points / (acked_at - start), points / (stored_at - start)


def _mqtt(mqtt_port: int, database_url: str, prefix: str, points: int) -> tuple[float, float]:
    per_device = -(-points // DEVICES)
    makers = [PointMaker(hour_ago(), per_device, seed=d) for d in range(DEVICES)]
    messages = []
    for b in range(-(-points // BATCH)):
        device = f"{prefix}-{b % DEVICES:03d}"
        n = min(BATCH, points - b * BATCH)
        body = {"device_id": device, "points": makers[b % DEVICES].points(n)}
        messages.append((points_topic(device), msgspec.json.encode(body)))
    with mqtt_device(mqtt_port) as device:
        start = time.perf_counter()
        infos = [device.client.publish(topic, body, qos=1) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(120)  # PUBACK
        acked_at = time.perf_counter()
    stored_at = _wait_stored(database_url, prefix, points)
    return points / (acked_at - start), points / (stored_at - start)


def run(stack: Stack, mqtt_port: int, rounds: int, points: int) -> Result:
    result = Result(rounds, points, load_before=os.getloadavg())
    for r in range(rounds):
        order = ["HTTP batches", "MQTT QoS 1"] if r % 2 == 0 else ["MQTT QoS 1", "HTTP batches"]
        for name in order:
            prefix = f"mq{r}{name[0].lower()}{int(time.time() * 1000) % 100_000}"
            if name == "HTTP batches":
                acked, stored = uvloop.run(_http(stack, prefix, points))
            else:
                acked, stored = _mqtt(mqtt_port, stack.servers.database_url, prefix, points)
            result.acked.setdefault(name, []).append(acked)
            result.stored.setdefault(name, []).append(stored)
            print(f"round {r + 1}/{rounds} {name:>12}: {acked:9.0f} acked points/s, {stored:9.0f} stored points/s",
                  flush=True)  # fmt: skip
    result.load_after = os.getloadavg()
    return result


def report(result: Result) -> str:
    acked = {name: statistics.median(v) for name, v in result.acked.items()}
    stored = {name: statistics.median(v) for name, v in result.stored.items()}
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, check=False)
    rows = "\n".join(
        f"| {name} | {acked[name]:,.0f} | {stored[name]:,.0f} | {min(result.stored[name]):,.0f} to "
        f"{max(result.stored[name]):,.0f} |"
        for name in result.acked
    )
    http, mqtt = "HTTP batches", "MQTT QoS 1"
    return f"""# MQTT devices benchmark: QoS 1 against HTTP batches

Written by `python -m tests.bench.mqtt` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

{result.points:,} points per round and path, {DEVICES} devices, {BATCH} points per HTTP request or MQTT
message; HTTP with {CONCURRENCY} concurrent clients, MQTT with one paho client (QoS 1, 20 in flight).
{result.rounds} rounds alternating which path went first; figures are medians over rounds. "Acked": until the
last 200 / PUBACK; "stored": until the last row was in PostgreSQL (whole stack running).

| path | acked points/s | stored points/s | stored, range over rounds |
|---|---|---|---|
{rows}

**Ratio MQTT / HTTP:** acked {acked[mqtt] / acked[http]:.2f}, stored {stored[mqtt] / stored[http]:.2f}.
A PUBACK does not wait for JetStream's fsync (README, "MQTT devices"), a 200 does: the acked figures measure
different promises. The stored figures are the comparable ones.

**Read with care.** Shared, loaded machine (load average {result.load_before[0]:.1f} before,
{result.load_after[0]:.1f} after): absolute figures say little, and even the ratio moves between runs.

Setup: {version.stdout.strip()}, Python {platform.python_version()}, {platform.system()} {platform.release()}.
"""


def main() -> None:
    """Own servers and stack in a temp dir; the report written and printed."""
    rounds = int(os.environ.get("BENCH_MQTT_ROUNDS", "4"))
    points = int(os.environ.get("BENCH_MQTT_POINTS", "20000"))
    root = scratch_dir("telemetry-bench-mqtt-")
    mqtt_port = free_port()
    nats_server = start_nats(root / "nats", mqtt_port=mqtt_port)
    postgres = start_postgres(root / "postgres", durable=False)
    stack: Stack | None = None
    try:
        migrate(postgres.url)
        stack = Stack(Servers(nats_server, postgres, mqtt_port=mqtt_port), root / "logs", suite_settings=False)
        stack.start_all()
        stack.wait_healthy()
        result = run(stack, mqtt_port, rounds, points)
        text = report(result)
        REPORT.write_text(text)
        print(text)
    finally:
        if stack is not None:
            stack.stop_all()
        postgres.stop()
        nats_server.stop()


if __name__ == "__main__":
    main()
