"""Streaming benchmark (`make bench`, after the main run): 100 open sockets against ingestion.

* ingest rate with 100 sockets open (each subscribed to one of the loaded devices, max_frequency 100 ms)
  as a ratio to none, in ABBA order (none, sockets, sockets, none) so drift of the machine cancels;
* delivery latency, publish acknowledgement (the HTTP 200) → receipt on the socket, p50/p99, at a
  moderate open-loop rate with the 100 sockets open;
* gateway memory per open socket (RSS after opening 100 sockets minus before, / 100).

Writes docs/benchmarks-streaming.md. Sizes: BENCH_STREAM_SOCKETS (100), BENCH_STREAM_POINTS (60000 per
ingest run), BENCH_STREAM_LAG_BATCHES (400, one every 25 ms).
"""

import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from websockets.asyncio.client import ClientConnection, connect

from tests.bench.client import make_client
from tests.bench.procs import cpu_seconds
from tests.bench.stats import percentile
from tests.support.servers import start_servers
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-streaming.md"
SOCKETS = int(os.environ.get("BENCH_STREAM_SOCKETS", "100"))
POINTS = int(os.environ.get("BENCH_STREAM_POINTS", "60000"))
LAG_BATCHES = int(os.environ.get("BENCH_STREAM_LAG_BATCHES", "400"))
LAG_INTERVAL_S = 0.025
BATCH = 500
CONCURRENCY = 8
FREQUENCY_MS = 100


def say(message: str) -> None:
    print(f"[bench-stream] {message}", flush=True)


def device(i: int) -> str:
    return f"stream-dev-{i % SOCKETS:03d}"


def batch_body(run: str, first: int, n: int, start: datetime) -> bytes:
    points = [
        {"timestamp": (start + timedelta(milliseconds=first + k)).isoformat(), "metric_name": "temperature",
         "value": float(first + k), "tags": {"run": run}}
        for k in range(n)
    ]  # fmt: skip
    return json.dumps({"data_points": points}).encode()


@dataclass
class Sockets:
    """Sockets opened in a child process (like dashboards elsewhere: their reading must not slow this client).

    The child prints "ready" once every socket is open; on "stop" it prints its counts and the receipt time
    (time.perf_counter: CLOCK_MONOTONIC, the same clock in both processes) of every latency-probe point.
    """

    proc: asyncio.subprocess.Process

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        await self.proc.wait()
        return dict(json.loads(line))


async def open_sockets(stack: Stack, n: int) -> Sockets:
    urls = []
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=30) as c:
        for i in range(n):
            r = await c.post("/api/v1/telemetry/subscribe",
                             json={"device_ids": [device(i)], "max_frequency": FREQUENCY_MS})  # fmt: skip
            answer = r.json()
            urls.append(
                stack.url.replace("http://", "ws://") + f"{answer['websocket_url']}?token={answer['connect_token']}"
            )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.streaming", "--readers", json.dumps(urls),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
    )  # fmt: skip
    assert proc.stdout is not None
    _readers.append(proc.pid)
    ready = await asyncio.wait_for(proc.stdout.readline(), 60)
    if ready.strip() != b"ready":
        raise RuntimeError(f"socket readers failed to start: {ready!r}")
    return Sockets(proc)


async def readers(urls: list[str]) -> None:
    """The child: read every socket until told to stop; report counts and probe receipt times."""
    received_at: dict[float, float] = {}
    counts = {"points": 0, "dropped": 0, "messages": 0}

    async def read(ws: ClientConnection) -> None:
        async for raw in ws:
            now = time.perf_counter()
            message = json.loads(raw)
            counts["messages"] += 1
            counts["dropped"] += message["dropped"]
            for p in message["data_points"]:
                counts["points"] += 1
                if p["value"] >= PROBE_BASE:
                    received_at.setdefault(p["value"], now)

    conns = [await connect(url, max_size=None) for url in urls]
    tasks = [asyncio.create_task(read(ws)) for ws in conns]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for ws in conns:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({**counts, "received_at": list(received_at.items())}), flush=True)


def stored(database_url: str, run: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry.points WHERE tags->>'run' = %s", (run,)).fetchone()
        return int(row[0]) if row else 0


_RUNS = ("warm", "a1", "b1", "b2", "a2")


_readers: list[int] = []  # the socket-reader child's pid while it runs (its CPU is the dashboards', not ours)


def service_cpu() -> float:
    """CPU seconds of the service: every process this bench started (servers, gateway, workers) and their
    children, but not this client nor the socket readers."""
    me = psutil.Process()
    own = sum(me.cpu_times()[:2])
    readers = sum(cpu_seconds(pid, tree=False) for pid in _readers if psutil.pid_exists(pid))
    return cpu_seconds(me.pid, tree=True) - own - readers


async def ingest(stack: Stack, database_url: str, run: str) -> tuple[float, float, float, float]:
    """POST POINTS points (BATCH per request, CONCURRENCY at a time); (accepted/s, stored/s, gateway CPU ms per
    1000 points, service CPU ms per 1000 points).

    The gateway's CPU time is the steadier figure on a shared machine: rates move with whatever else runs.

    Each run writes its own hour of time stamps, so no run overwrites another's rows.
    """
    client = make_client("raw", stack.url, stack.headers, CONCURRENCY)
    gateway = psutil.Process(stack.procs["gateway"].pid)
    cpu_before = sum(gateway.cpu_times()[:2])
    service_before = service_cpu()
    start_ts = datetime.now(UTC) - timedelta(hours=2 + _RUNS.index(run))
    bodies = [(device(b), batch_body(run, b * BATCH, BATCH, start_ts)) for b in range(POINTS // BATCH)]
    queue = list(reversed(bodies))
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            dev, body = queue.pop()
            status, data = await client.post(f"/api/v1/telemetry/devices/{dev}/telemetry/batch", body)
            if status != 200:
                raise RuntimeError(f"ingest answered {status}: {data[:200]!r}")

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    accepted_s = time.perf_counter() - started
    gateway_ms = (sum(gateway.cpu_times()[:2]) - cpu_before) * 1000
    await client.aclose()
    total = len(bodies) * BATCH
    while stored(database_url, run) < total:
        if time.perf_counter() - started > 300:
            raise RuntimeError(f"{run}: points not stored within 300 s")
        await asyncio.sleep(0.05)
    service_ms = (service_cpu() - service_before) * 1000
    return (
        total / accepted_s,
        total / (time.perf_counter() - started),
        gateway_ms / (total / 1000),
        service_ms / (total / 1000),
    )


PROBE_BASE = 10_000_000.0


async def send_probes(stack: Stack) -> dict[float, tuple[float, float]]:
    """One 10-point batch every 25 ms (open loop) round the devices; per point value: (POST sent, 200 received)."""
    client = make_client("raw", stack.url, stack.headers, 16)
    acked: dict[float, tuple[float, float]] = {}
    start_ts = datetime.now(UTC) - timedelta(minutes=30)

    async def send(b: int) -> None:
        body = batch_body("lag", int(PROBE_BASE) + b * 10, 10, start_ts)
        sent = time.perf_counter()
        status, _ = await client.post(f"/api/v1/telemetry/devices/{device(b)}/telemetry/batch", body)
        assert status == 200
        now = time.perf_counter()
        for k in range(10):
            acked[PROBE_BASE + b * 10 + k] = (sent, now)

    tasks = []
    for b in range(LAG_BATCHES):
        tasks.append(asyncio.create_task(send(b)))
        await asyncio.sleep(LAG_INTERVAL_S)
    await asyncio.gather(*tasks)
    await client.aclose()
    return acked


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def run(stack: Stack, database_url: str) -> dict[str, float]:
    pid = stack.procs["gateway"].pid
    rates: dict[str, list[tuple[float, float, float, float]]] = {"none": [], "sockets": []}
    say("warm-up")
    await ingest(stack, database_url, "warm")
    say("A: no sockets")
    rates["none"].append(await ingest(stack, database_url, "a1"))
    before = rss(pid)
    sockets = await open_sockets(stack, SOCKETS)
    await asyncio.sleep(1.0)
    per_socket = (rss(pid) - before) / SOCKETS
    say(f"B: {SOCKETS} sockets open")
    rates["sockets"].append(await ingest(stack, database_url, "b1"))
    rates["sockets"].append(await ingest(stack, database_url, "b2"))
    say("delivery latency")
    probes = await send_probes(stack)
    await asyncio.sleep(2.0)  # the last probes' messages are at most one max_frequency window away
    report = await sockets.stop()
    received_at = dict(report["received_at"])
    missing = [v for v in probes if v not in received_at]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(probes)} probe points never reached their socket")
    from_ack = [(received_at[v] - acked) * 1000 for v, (_sent, acked) in probes.items()]
    from_send = [(received_at[v] - sent) * 1000 for v, (sent, _acked) in probes.items()]
    say("A: no sockets")
    rates["none"].append(await ingest(stack, database_url, "a2"))

    def mean(which: str, k: int) -> float:
        return sum(r[k] for r in rates[which]) / len(rates[which])

    return {
        "accepted_none": mean("none", 0), "accepted_sockets": mean("sockets", 0),
        "stored_none": mean("none", 1), "stored_sockets": mean("sockets", 1),
        "cpu_none": mean("none", 2), "cpu_sockets": mean("sockets", 2),
        "svc_none": mean("none", 3), "svc_sockets": mean("sockets", 3),
        "p50_ms": percentile(from_ack, 50), "p99_ms": percentile(from_ack, 99), "max_ms": max(from_ack),
        "send_p50_ms": percentile(from_send, 50), "send_p99_ms": percentile(from_send, 99),
        "per_socket_kib": per_socket / 1024, "streamed": report["points"], "dropped": report["dropped"],
    }  # fmt: skip


def write(r: dict[str, float]) -> str:
    text = f"""# Streaming benchmark

Generated by `python -m tests.bench.streaming` (part of `make bench`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,
{platform.machine()}, {os.cpu_count()} cores. {SOCKETS} WebSockets, each subscribed to one device of the load,
max_frequency {FREQUENCY_MS} ms; ingest runs of {POINTS:,} points in {BATCH}-point batches, {CONCURRENCY} concurrent
clients, in ABBA order (no sockets, sockets, sockets, no sockets). Gateway, workers, PostgreSQL, NATS and this
client share the machine.

| Measure | Result | Target |
|---|---|---|
| Ingest accepted (HTTP 200), sockets / none | {r["accepted_sockets"]:,.0f} / {r["accepted_none"]:,.0f} points/s = **{r["accepted_sockets"] / r["accepted_none"]:.2f}** | ≥ 0.9 |
| Ingest stored (queryable), sockets / none | {r["stored_sockets"]:,.0f} / {r["stored_none"]:,.0f} points/s = **{r["stored_sockets"] / r["stored_none"]:.2f}** | ≥ 0.9 |
| Service CPU per 1,000 points ingested (gateway, workers, NATS, PostgreSQL), none / sockets — the ingest rate ratio on a CPU-bound machine | {r["svc_none"]:.1f} / {r["svc_sockets"]:.1f} ms = **{r["svc_none"] / r["svc_sockets"]:.2f}** | ≥ 0.9 |
| Gateway CPU per 1,000 points ingested, sockets / none | {r["cpu_sockets"]:.1f} / {r["cpu_none"]:.1f} ms = {r["cpu_sockets"] / r["cpu_none"]:.2f} | — |
| Delivery latency, 200 → socket, p50 / p99 / max | {r["p50_ms"]:.1f} / **{r["p99_ms"]:.1f}** / {r["max_ms"]:.1f} ms | p99 < 150 ms |
| Delivery latency, POST sent → socket, p50 / p99 | {r["send_p50_ms"]:.1f} / {r["send_p99_ms"]:.1f} ms | — |
| Gateway memory per open socket | {r["per_socket_kib"]:.0f} KiB | — |
| Points streamed during the socket runs / dropped | {r["streamed"]:,.0f} / {r["dropped"]:,.0f} | dropped 0 |

The rates move with everything else on the machine, including the process reading the 100 sockets (its
JSON parsing is the dashboards' work, not the service's, but it takes the same cores). The service-CPU row
counts only the service's processes, so on a CPU-bound machine it is the ingest-rate ratio that streaming
costs the service itself.

Latency is measured at {1 / LAG_INTERVAL_S:.0f} batches/s of 10 points round the {SOCKETS} devices: each point's
receipt time on its socket (read by a separate process, as dashboards are) minus the time its POST returned,
or was sent (CLOCK_MONOTONIC in both processes). The socket can see a point before its POST's answer is read
(negative values): the gateway publishes, gets JetStream's acknowledgement and answers while the stream is
already delivering. A message waits for its socket's max_frequency window, so a device sending faster than
every 100 ms sees up to 100 ms of that.
"""
    DOC.write_text(text)
    return text


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    servers = start_servers(work / "servers", durable=True)
    stack = Stack(servers, work / "logs", suite_settings=False)
    try:
        stack.start_all()
        results = await run(stack, servers.database_url)
        print(write(results))
    finally:
        stack.stop_all()
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--readers":
        asyncio.run(readers(json.loads(sys.argv[2])))
    else:
        asyncio.run(main())
