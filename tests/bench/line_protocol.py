"""Line-protocol ingest rate vs the JSON batch API on the same points (issue 16).

``python -m tests.bench.line_protocol`` (part of `make bench`; writes docs/benchmarks-line-protocol.md).

* The data: ``BENCH_LP_POINTS`` points (default 100,000) of ``BENCH_LP_DEVICES`` devices, 1000 points per
  request: one device's 100 instants x 10 fields. As line protocol that is 100 lines
  ``bench,host=<device>,site=<s> f0=…,…,f9=… <ns>`` (POST /api/v2/write); as JSON the same 1000 points
  ``bench_f0`` … ``bench_f9`` with tag ``site`` (POST /devices/{id}/telemetry/batch). Both are built before
  the clock starts.
* Runs alternate JSON, line protocol, line protocol, JSON (ABBA, so a drift of the loaded machine weighs on
  both alike); each uses its own devices. Two figures per run: the accept rate (points/s from the first send
  until the last answer, i.e. until JetStream acknowledged all) and the stored rate (until the ingest
  consumer has acknowledged everything, i.e. until the rows are committed).
* Also the parser alone, in this process: lines and points per second of gateway.line_protocol.parse plus
  the conversion to JSON points (gateway.line_points), the gateway's CPU work that JSON does not have.

InfluxDB's own /write on the same data is not measured: that needs the peers harness outside this repository,
which the project must not depend on.
"""

import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from gateway.line_points import PRECISIONS, translate
from telemetry_core.topology import INGEST
from tests.bench.backlog import Backlog
from tests.bench.bench_stack import bench_stack
from tests.bench.client import Poster, make_client
from tests.support.stack import Stack

FIELDS = 10
LINES_PER_REQUEST = 100  # x FIELDS = 1000 points, the JSON batch API's maximum
DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-line-protocol.md"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def say(message: str) -> None:
    print(f"[line-protocol-bench] {message}", flush=True)


Request = tuple[str, bytes, int]  # path, body, points


def build(prefix: str, total: int, devices: int) -> tuple[list[Request], list[Request]]:
    """The same points as line-protocol requests and as JSON batch requests."""
    rng = random.Random(prefix)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    lp: list[Request] = []
    js: list[Request] = []
    for r in range(-(-total // (LINES_PER_REQUEST * FIELDS))):
        device = f"{prefix}-{r % devices:03d}"
        site = f"s{r % 7}"
        base = start + timedelta(seconds=(r // devices) * LINES_PER_REQUEST)
        lines, points = [], []
        for i in range(LINES_PER_REQUEST):
            when = base + timedelta(seconds=i)
            values = [round(rng.uniform(0, 100), 3) for _ in range(FIELDS)]
            ns = int(when.timestamp()) * 1_000_000_000
            lines.append(f"bench,host={device},site={site} " + ",".join(f"f{k}={v}" for k, v in enumerate(values))
                         + f" {ns}")  # fmt: skip
            stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            points += [{"timestamp": stamp, "metric_name": f"bench_f{k}", "value": v, "tags": {"site": site}}
                       for k, v in enumerate(values)]  # fmt: skip
        lp.append(("/api/v2/write?precision=ns", ("\n".join(lines) + "\n").encode(), len(points)))
        js.append((f"/api/v1/telemetry/devices/{device}/telemetry/batch",
                   msgspec.json.encode({"data_points": points}), len(points)))  # fmt: skip
    return lp, js


async def send(client: Poster, requests: list[Request], concurrency: int) -> int:
    todo = iter(requests)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for path, body, n in todo:
            status, data = await client.post(path, body)
            if status not in (200, 204):
                raise RuntimeError(f"{path}: HTTP {status}: {data[:300]!r}")
            sent += n

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def run(client: Poster, backlog: Backlog, requests: list[Request], concurrency: int) -> tuple[float, float]:
    """(accepted points/s, stored points/s) of one run."""
    await backlog.wait_idle(900)  # nobody starts with another run's backlog
    t0 = time.perf_counter()
    points = await send(client, requests, concurrency)
    accepted = time.perf_counter() - t0
    await backlog.wait_idle(900, (INGEST,))
    stored = time.perf_counter() - t0
    return points / accepted, points / stored


def parser_rate(requests: list[Request]) -> str:
    """Lines and points per second of parse + conversion, in this process."""
    bodies = [body.decode() for _, body, _ in requests]
    t0 = time.perf_counter()
    lines = points = 0
    for text in bodies:
        read = translate(text, ("device_id", "host"), PRECISIONS["ns"], time.time_ns())
        assert not read.refused, read.refused[:3]
        lines += read.lines
        points += sum(len(d.raws) for d in read.devices.values())
    elapsed = time.perf_counter() - t0
    return (f"parser + conversion alone (one process, no I/O): {lines / elapsed:,.0f} lines/s = "
            f"{points / elapsed:,.0f} points/s")  # fmt: skip


async def bench(stack: Stack) -> list[str]:
    total, devices = _env_int("BENCH_LP_POINTS", 100_000), _env_int("BENCH_LP_DEVICES", 20)
    concurrency = _env_int("BENCH_LP_CONCURRENCY", 8)
    headers = {**stack.headers}
    client = make_client("raw", stack.url, headers, concurrency)
    backlog = await Backlog.connect(stack.servers.nats_url)
    results: list[str] = []
    try:
        warm_lp, warm_js = build("lp-warm", 10_000, 5)
        await send(client, warm_lp + warm_js, concurrency)
        rates: dict[str, list[tuple[float, float]]] = {"json": [], "line protocol": []}
        for i, kind in enumerate(("json", "line protocol", "line protocol", "json")):
            lp, js = build(f"lp-run{i}", total, devices)
            rate = await run(client, backlog, js if kind == "json" else lp, concurrency)
            rates[kind].append(rate)
            say(f"run {i + 1} {kind}: accepted {rate[0]:,.0f} points/s, stored {rate[1]:,.0f} points/s")
            results.append(f"run {i + 1}, {kind}: accepted {rate[0]:,.0f} points/s, stored {rate[1]:,.0f} points/s")
        for j, what in enumerate(("accepted", "stored")):
            j_rate = sum(r[j] for r in rates["json"]) / 2
            l_rate = sum(r[j] for r in rates["line protocol"]) / 2
            results.append(f"{what}: line protocol / JSON batch = {l_rate:,.0f} / {j_rate:,.0f} points/s "
                           f"= {l_rate / j_rate:.2f}")  # fmt: skip
        results.append(parser_rate(build("lp-parse", total, devices)[0]))
        for r in results[-3:]:
            say(r)
        return results
    finally:
        await backlog.close()
        await client.aclose()


def _write(lines: list[str], total: int) -> None:
    load = os.getloadavg()
    body = "\n".join(f"- {line}" for line in lines)
    DOC.write_text(
        "# Line-protocol ingestion benchmark\n\n"
        f"Written by `python -m tests.bench.line_protocol` (part of `make bench`) on {datetime.now(UTC):%Y-%m-%d %H:%M} "
        f"UTC, {os.cpu_count()} cores, load average before the run {load[0]:.1f}. Each run posts {total:,} points, "
        f"1000 per request ({LINES_PER_REQUEST} lines x {FIELDS} fields as line protocol, the same 1000 points as "
        "a JSON batch), 8 concurrent clients; runs alternate JSON, line protocol, line protocol, JSON. *Accepted*: "
        "until the last answer (JetStream acknowledged every point); *stored*: until the ingest worker committed "
        "them.\n\n"
        f"{body}\n\n"
        "The machine this ran on is shared by several jobs (2 cores, load average often 8-12): the two JSON runs "
        "of one sitting can differ by 2x, so read the ratios as rough, and re-run on a quiet machine before "
        "drawing conclusions. The parser figure is the gateway's extra CPU work per point for line protocol.\n\n"
        "InfluxDB's own `/write` on the same data is not measured here: that needs the peers harness outside "
        "this repository, which the project must not depend on.\n"
    )


def main() -> None:
    total = _env_int("BENCH_LP_POINTS", 100_000)
    with bench_stack("telemetry-lp-bench-") as (_root, _servers, stack):
        stack.start_all()
        lines = asyncio.run(bench(stack))
        _write(lines, total)


if __name__ == "__main__":
    main()
