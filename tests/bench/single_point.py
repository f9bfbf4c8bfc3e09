"""Single-point POST at 16 concurrent clients: where its time and the system's CPU go, old against new in one run.

`python -m tests.bench.single_point` (part of `make bench`) writes docs/benchmarks-single-point.md:

* **bare nats-server**: JetStream publish → PubAck latency with ``sync_interval: always`` (the default: fsync
  before every acknowledgement) against ``1s``, one and 16 publishers, alternating rounds: what the fsync costs
  the broker alone, and whether concurrent publishes share an fsync (they do not: see the document);
* **the whole stack** (durable PostgreSQL, NATS ``always``, every worker): single-point POSTs at 16 concurrent
  clients through this tree's processes and, when BENCH_BASE_TREE names a checkout of an older commit (e.g.
  `git worktree add --detach /tmp/base a0f5922`), through that tree's gateway and workers on servers of their own
  (idle while the other is measured), alternating which goes first; per run p50/p99, requests/s, the gateway's mean publish → PubAck wait (its
  /metrics histogram) and the CPU per request of every process (gateway, NATS, each worker, PostgreSQL);
* **the same stack with NATS at ``sync_interval: 1s``** (a second set of servers and workers, idle while the
  first is measured), alternating with the above: what the fsync costs inside the whole system.

* **the gateway alone**: tests/bench/request_path.py's in-process probe (CPU of one POST, by section), this tree
  and BENCH_BASE_TREE alternating, on the first set of servers.

Sizes: BENCH_SINGLE_REQUESTS (default 3000 per run), BENCH_SINGLE_ROUNDS (default 3),
BENCH_SINGLE_PROBE_REQUESTS (default 1000 per kind and round; 0 skips the probe). The machine is shared:
compare figures of one run with each other (ratios), never with another sitting.
"""

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import uvloop
from nats.js.api import StorageType, StreamConfig

from telemetry_core.embedded import start_nats, start_postgres
from telemetry_core.migrate import migrate
from tests.bench.client import make_client
from tests.bench.config import env_int
from tests.bench.gateway_headroom import pct, request_path, seed
from tests.bench.latency import run_latency
from tests.bench.procs import cpu_seconds
from tests.support.servers import Servers
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-single-point.md"
WORKERS = ("ingest-worker", "projection-worker", "alert-worker")
BODY = b'{"device_id":"d","points":[{"timestamp":"2026-12-03T10:00:00Z","metric_name":"temperature","value":25.5}]}'
GATEWAY_ENV = {"TELEMETRY_JWT_SECRET": "single-point-bench-secret-0123456789abcdef"}


def say(message: str) -> None:
    print(f"[single-point] {message}", flush=True)


# ---------------------------------------------------------------- bare nats-server


async def _bare_publish(url: str, concurrency: int, n: int, streams: int = 1) -> tuple[float, float, float]:
    """(messages/s, p50 ms, p99 ms) of ``n`` JetStream publishes by ``concurrency`` closed-loop publishers.

    With ``streams`` > 1 publisher c writes to stream c % streams: the same load spread over several streams.
    """
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for k in range(streams):
            name = f"BARE_{streams}_{k}"
            await js.add_stream(StreamConfig(name=name, subjects=[f"bare{streams}.{k}.>"], storage=StorageType.FILE))
        lat: list[float] = []
        stamp = time.time_ns()

        async def one(c: int, count: int, record: bool) -> None:
            for i in range(count):
                t = time.perf_counter()
                await nc.request(
                    f"bare{streams}.{c % streams}.{c}",
                    BODY,
                    timeout=10,
                    headers={"Nats-Msg-Id": f"{stamp}-{record}-{c}-{i}"},
                )
                if record:
                    lat.append(time.perf_counter() - t)

        await asyncio.gather(*(one(c, 20, False) for c in range(concurrency)))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(c, n // concurrency, True) for c in range(concurrency)))
        return len(lat) / (time.perf_counter() - t0), pct(lat, 0.5), pct(lat, 0.99)
    finally:
        await nc.close()


Bare = dict[tuple[str, int, int], list[tuple[float, float, float]]]  # (sync, publishers, streams) → runs

# The whole-stack comparison runs these bare configurations: sync mode, publishers, streams.
BARE_CASES = (("always", 1, 1), ("always", 16, 1), ("always", 16, 4), ("1s", 1, 1), ("1s", 16, 1))


def bare_nats(root: Path, rounds: int) -> Bare:
    servers = {sync: start_nats(root / f"bare-{sync}", sync_interval=sync) for sync in ("always", "1s")}
    out: Bare = {}
    try:
        for r in range(rounds):
            for sync, conc, streams in BARE_CASES if r % 2 == 0 else BARE_CASES[::-1]:
                fig = uvloop.run(_bare_publish(servers[sync].url, conc, 400 if conc == 1 else 3200, streams))
                out.setdefault((sync, conc, streams), []).append(fig)
                say(f"bare nats {sync} c={conc} streams={streams}: {fig[0]:,.0f} msg/s p50 {fig[1]:.2f} ms "
                    f"p99 {fig[2]:.2f} ms")  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    return out


# ---------------------------------------------------------------- the whole stack


@dataclass
class Run:
    p50: float
    p99: float
    rps: float
    publish_ms: float  # mean publish → PubAck wait in the gateway
    cpu_us: dict[str, float]  # process → CPU µs per request
    load: float


@dataclass
class Variant:
    """One gateway (and the servers and workers behind it) to send the single-point load to."""

    name: str
    stack: Stack
    servers: Servers
    gateway_label: str
    nats_pid: int
    postgres_pid: int
    runs: list[Run] = field(default_factory=list)


def _publish_sum(text: str) -> tuple[float, float]:
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("telemetry_publish_duration_seconds_sum"):
            total += float(line.split()[-1])
        elif line.startswith("telemetry_publish_duration_seconds_count"):
            count += float(line.split()[-1])
    return total, count


def _pids(v: Variant) -> dict[str, tuple[int, bool]]:
    pids = {name: (v.stack.procs[name].pid, False) for name in WORKERS}
    pids["gateway"] = (v.stack.procs[v.gateway_label].pid, False)
    pids["nats-server"] = (v.nats_pid, False)
    pids["postgres"] = (v.postgres_pid, True)
    return pids


async def _measure(v: Variant, requests: int) -> Run:
    client = make_client("raw", v.stack.url, v.stack.headers, 16)
    pids = _pids(v)
    try:
        async with httpx.AsyncClient(base_url=v.stack.url, headers=v.stack.headers, timeout=30) as h:
            m0 = _publish_sum((await h.get("/metrics")).text)
        c0 = {name: cpu_seconds(pid, tree) for name, (pid, tree) in pids.items()}
        load = os.getloadavg()[0]
        res = await run_latency(client, requests=requests, concurrency=16)
        c1 = {name: cpu_seconds(pid, tree) for name, (pid, tree) in pids.items()}
        async with httpx.AsyncClient(base_url=v.stack.url, headers=v.stack.headers, timeout=30) as h:
            m1 = _publish_sum((await h.get("/metrics")).text)
    finally:
        await client.aclose()
    # run_latency sends 200 warm-up requests too; CPU covers them, so divide by all requests sent.
    sent = res.requests + 200
    cpu = {name: (c1[name] - c0[name]) / sent * 1e6 for name in pids}
    publish = (m1[0] - m0[0]) / max(m1[1] - m0[1], 1) * 1000
    return Run(pct(res.latencies, 0.5), pct(res.latencies, 0.99), res.rps, publish, cpu, load)


def _stack(root: Path, name: str, sync: str, tree: Path | None = None) -> tuple[Stack, Servers, int, int]:
    """Servers of their own and every process, running this tree's code or ``tree``'s."""
    nats_server = start_nats(root / name / "nats", sync_interval=sync)
    postgres = start_postgres(root / name / "postgres", durable=True)
    migrate(postgres.url)
    servers = Servers(nats_server, postgres)
    stack = Stack(servers, root / name / "logs", extra_env=GATEWAY_ENV, tree=tree, suite_settings=False)
    stack.start_all()
    stack.wait_healthy(timeout=300)
    return stack, servers, nats_server.proc.pid, postgres.proc.pid


Probe = dict[str, dict[str, dict[str, Any]]]


def whole_stack(
    root: Path, rounds: int, requests: int, base_tree: Path | None, probe_n: int
) -> tuple[list[Variant], Probe]:
    """The HTTP runs, alternating; then (``probe_n`` > 0) the in-process request-path probe on the same servers."""
    stacks: list[tuple[Stack, Servers]] = []
    try:
        stack, servers, nats_pid, pg_pid = _stack(root, "always", "always")
        stacks.append((stack, servers))
        variants = [Variant("now", stack, servers, "gateway", nats_pid, pg_pid)]
        if base_tree is not None:  # gateway and workers of the older commit, on servers of their own
            base, base_servers, nats_b, pg_b = _stack(root, "before", "always", base_tree)
            stacks.append((base, base_servers))
            variants.append(Variant("before", base, base_servers, "gateway", nats_b, pg_b))
        relaxed, relaxed_servers, nats_1s, pg_1s = _stack(root, "sync-1s", "1s")
        stacks.append((relaxed, relaxed_servers))
        variants.append(Variant("now, NATS sync 1s", relaxed, relaxed_servers, "gateway", nats_1s, pg_1s))
        for r in range(rounds):
            for v in variants if r % 2 == 0 else variants[::-1]:
                run = uvloop.run(_measure(v, requests))
                v.runs.append(run)
                say(f"round {r} {v.name}: p50 {run.p50:.1f} ms p99 {run.p99:.1f} ms {run.rps:,.0f} req/s, "
                    f"publish {run.publish_ms:.1f} ms, CPU {sum(run.cpu_us.values()):,.0f} µs/request, load {run.load:.1f}")  # fmt: skip
        probe: Probe = {}
        if probe_n > 0:
            say(f"in-process request path: {probe_n} requests per kind, {rounds} rounds, builds alternating")
            seed(stack)  # q1 and q2 of the probe read this series
            probe = request_path(stack, base_tree, probe_n, rounds)
        return variants, probe
    finally:
        for stack, _servers in reversed(stacks):
            stack.stop_all()
        for servers in {id(s): s for _stack_, s in stacks}.values():
            servers.stop()


# ---------------------------------------------------------------- the document


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _probe_lines(probe: Probe, base: str) -> list[str]:
    """The gateway alone: CPU of one POST in-process (tests/bench/request_path.py), before and now."""
    if not probe:
        return []
    lines = [
        "",
        "## The gateway alone: one POST in-process (tests/bench/request_path.py)",
        "",
        "The real app called as an ASGI app in one process, one request at a time (no socket, no client); CPU per "
        f"request over blocks of 50, median block and fastest block; builds alternate. before = {base}. Sections "
        "are µs per request under cProfile (inflated 3-5x: compare a section across builds only).",
        "",
        "| build | CPU median block | fastest block | wall p50 |",
        "|---|---|---|---|",
    ]
    for name, kinds in probe.items():
        post = kinds["post"]
        lines.append(
            f"| {name} | {post['cpu_us']:.0f} µs | {post['cpu_min_us']:.0f} µs | {post['wall_p50_us']:.0f} µs |"
        )
    if "before" in probe:
        now, before = probe["now"]["post"], probe["before"]["post"]
        lines += [
            "",
            f"now / before: median block {now['cpu_us'] / before['cpu_us']:.2f}x, fastest block "
            f"{now['cpu_min_us'] / before['cpu_min_us']:.2f}x.",
            "",
            "| section (µs per request under cProfile) | before | now |",
            "|---|---|---|",
            *(f"| {k} | {before['sections'][k]:.0f} | {now['sections'][k]:.0f} |" for k in now["sections"]),
        ]
    return lines


def render(bare: Bare, variants: list[Variant], probe: Probe, base: str, before_load: float) -> str:
    """The document; ``before_load``: the 1-minute load average before this module started anything."""
    loads = [r.load for v in variants for r in v.runs]
    lines = [
        "# Single-point POST: where the time and the CPU go",
        "",
        f"Written by `python -m tests.bench.single_point` (part of `make bench`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average {before_load:.1f} before "
        f"the runs and {min(loads):.1f}-{max(loads):.1f} during them (mostly the benchmark's own processes; the "
        "machine is shared: compare within this document only). "
        "Medians over alternating rounds.",
        "",
        "## Bare nats-server: JetStream publish → PubAck",
        "",
        "One stream, file storage, a one-point POINTS body per message (107 bytes), closed-loop publishers.",
        "",
        "| sync_interval | publishers | streams | messages/s | p50 | p99 |",
        "|---|---|---|---|---|---|",
    ]
    for (sync, conc, streams), figs in sorted(bare.items()):
        lines.append(
            f"| {sync} | {conc} | {streams} | {_med([f[0] for f in figs]):,.0f} | {_med([f[1] for f in figs]):.2f} ms | "
            f"{_med([f[2] for f in figs]):.2f} ms |"
        )
    a16, s16, a16x4 = bare.get(("always", 16, 1)), bare.get(("1s", 16, 1)), bare.get(("always", 16, 4))
    if a16 and s16:
        lines += [
            "",
            f"At 16 publishers `always` reaches {_med([f[0] for f in a16]) / _med([f[0] for f in s16]):.2f}x the "
            "messages/s of `1s`. nats-server fsyncs each message before its PubAck (one fsync per message, counted "
            "with strace; concurrent publishes to one stream do not share one), so a stream's publishes queue "
            "behind one another's fsync: p50 at 16 publishers is about 16 times one publish's store + fsync.",
        ]
    if a16 and a16x4:
        lines += [
            "",
            "The same 16 publishers spread over 4 streams (publisher c writes to stream c % 4), `always`: "
            f"{_med([f[0] for f in a16x4]) / _med([f[0] for f in a16]):.2f}x the messages/s of one stream, p50 "
            f"{_med([f[1] for f in a16x4]) / _med([f[1] for f in a16]):.2f}x: each stream stores and fsyncs in "
            "its own goroutine, so the streams' fsyncs overlap and the filesystem's journal commits them together.",
        ]
    lines += [
        "",
        "## The whole stack: single-point POST at 16 concurrent clients",
        "",
        f"Durable PostgreSQL, every worker. `now` = this tree's gateway and workers; `before` = the gateway and "
        f"workers of {base}, on servers of their own (same settings); `now, NATS sync 1s` = a second set of servers and workers with "
        "`sync_interval: 1s`. CPU is µs of CPU per request (user + system, psutil) of each process; PostgreSQL "
        "includes every backend. `publish` is the gateway's mean publish → PubAck wait (its histogram).",
        "",
        "| variant | p50 | p99 | requests/s | publish wait | CPU µs/request: "
        "gateway / nats / ingest / projection / alert / postgres | total |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        if not v.runs:
            continue
        cpu = {k: _med([r.cpu_us[k] for r in v.runs]) for k in v.runs[0].cpu_us}
        order = ("gateway", "nats-server", "ingest-worker", "projection-worker", "alert-worker", "postgres")
        lines.append(
            f"| {v.name} | {_med([r.p50 for r in v.runs]):.1f} ms | {_med([r.p99 for r in v.runs]):.1f} ms | "
            f"{_med([r.rps for r in v.runs]):,.0f} | {_med([r.publish_ms for r in v.runs]):.1f} ms | "
            f"{' / '.join(f'{cpu[k]:,.0f}' for k in order)} | {sum(cpu.values()):,.0f} |"
        )
    by = {v.name: v for v in variants if v.runs}
    if "before" in by:
        now, before = by["now"], by["before"]
        lines += [
            "",
            "Ratios now / before (per round, then the median): p50 "
            f"{_med([n.p50 / b.p50 for n, b in zip(now.runs, before.runs, strict=False)]):.2f}, p99 "
            f"{_med([n.p99 / b.p99 for n, b in zip(now.runs, before.runs, strict=False)]):.2f}, requests/s "
            f"{_med([n.rps / b.rps for n, b in zip(now.runs, before.runs, strict=False)]):.2f}, gateway CPU per "
            f"request {_med([n.cpu_us['gateway'] / b.cpu_us['gateway'] for n, b in zip(now.runs, before.runs, strict=False)]):.2f}, "
            f"whole-system CPU per request {_med([sum(n.cpu_us.values()) / sum(b.cpu_us.values()) for n, b in zip(now.runs, before.runs, strict=False)]):.2f}.",
        ]
    if "now, NATS sync 1s" in by:
        now, relaxed = by["now"], by["now, NATS sync 1s"]
        lines += [
            "",
            f"Ratios sync 1s / always: requests/s {_med([r.rps for r in relaxed.runs]) / _med([r.rps for r in now.runs]):.2f}, "
            f"p50 {_med([r.p50 for r in relaxed.runs]) / _med([r.p50 for r in now.runs]):.2f}, NATS CPU per request "
            f"{_med([r.cpu_us['nats-server'] for r in relaxed.runs]) / _med([r.cpu_us['nats-server'] for r in now.runs]):.2f}.",
        ]
    # The load during the runs is mostly this module's own (16 clients, three stacks): only the load before it
    # started says whether other jobs shared the machine.
    if before_load > (os.cpu_count() or 1):
        lines += [
            "",
            f"**Load average {before_load:.1f} on {os.cpu_count()} cores before these runs started: other jobs shared "
            "the CPU, so the rows above differ by noise (even the `1s` row can come out slower). Trust only the "
            "bare nats-server and in-process figures of such a run; rerun the whole-stack part on a quiet machine.**",
        ]
    lines += _probe_lines(probe, base)
    lines += [
        "",
        "## Reading it",
        "",
        "* At 16 closed-loop clients the latency is the queue: p50 ≈ 16 / (requests/s). Requests/s is bounded "
        "by the CPU all processes spend per request on the shared cores (the total column), so p99 < 10 ms at "
        "16 clients needs roughly 1,600+ requests/s, i.e. well under 1.2 ms of CPU per request for the whole "
        "system on 2 idle cores.",
        "* The gateway's publish wait is most of a request's wall time, and inside it NATS, the workers and "
        "PostgreSQL all compete for the same cores. Without an fsync before each PubAck (the `1s` row) every process "
        "also spends less CPU per request: quicker PubAcks put more requests in flight, every consumer's batches grow "
        "and their per-batch costs (a fetch, a transaction, a commit) are shared by more requests. Neither row "
        "reaches p99 < 10 ms at 16 clients on 2 cores.",
        "* Each POST costs NATS one fsync for its POINTS message, one POINTS delivery to two consumers (ingest, "
        "alerts) and their acks; since StoredNotices, the ingest worker's notices of a whole transaction (about 20 "
        "requests at this load) are one NOTICES message: one fsync and one delivery to each of the three projections "
        "and each gateway's cache feed per transaction, not per request. Consumer acks are not fsynced per ack.",
        "* `now` answers single-point POSTs in front of Litestar (gateway/fast_ingest.py) and its rollups and "
        "device_stats projections linger 0.1 s for more notices (fewer transactions); the in-process probe below "
        "calls the Litestar app (create_app), so it shows the route, not the fast path.",
        "* One fsync per message, not shared between concurrent publishes, makes a stream's p50 at 16 publishers "
        "about 16 fsyncs: on a disk that others use too (this machine) the fsync time moves 5-10x between "
        "sittings, and so does that p50. Sharing fsyncs would take several messages per fsync (several POINTS "
        "streams whose fsyncs the filesystem's journal can merge, or several devices' points per message), "
        "not a setting: nats-server has no group commit for one stream.",
        "",
        "## Measured by hand (2026-12-03, same machine; not re-run by this module)",
        "",
        "* `strace -f -c` on nats-server during 1,700 single-point POSTs through the whole stack: 3,750 fsync calls "
        "(2.2 per request) and 3,368 pwrite64 (2.0 per request).",
        "* py-spy (200 Hz, on-CPU only) of every Python process during the same load: in the gateway, the route "
        "function (validation, signing, publish) is 19 % of its CPU; uvicorn + Litestar around it (HTTP parsing, "
        "kwargs and DTO, response, middleware) most of the rest; the socket writes alone (nats-py's flusher 12.6 %, "
        "uvicorn's send 8.9 %) a fifth. In the workers (uvloop since), select and socket writes were 20-50 % of their "
        "CPU; the projection worker's three consumers cost it about as much CPU per request as the gateway.",
        "* Atomic batch publish (nats-server 2.12+, `allow_atomic`) as a group commit: 4 fsyncs per 16-message batch "
        "(not 1), slower than single publishes here, and a duplicate `Nats-Msg-Id` fails the whole batch (error "
        '10201) instead of answering "duplicate": no use for retried requests.',
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    rounds = env_int("BENCH_SINGLE_ROUNDS", 3)
    requests = env_int("BENCH_SINGLE_REQUESTS", 3000)
    base_raw = os.environ.get("BENCH_BASE_TREE", "").strip()
    base_tree = Path(base_raw).resolve() if base_raw else None
    base_name = os.environ.get("BENCH_BASE_NAME", base_raw or "(no BENCH_BASE_TREE given)")
    before_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="single-point-") as tmp:
        root = Path(tmp)
        say("bare nats-server: sync always vs 1s")
        bare = bare_nats(root, rounds)
        say(f"whole stack: {requests:,} single-point POSTs per run, {rounds} rounds")
        variants, probe = whole_stack(root, rounds, requests, base_tree, env_int("BENCH_SINGLE_PROBE_REQUESTS", 1000))
    DOC.write_text(render(bare, variants, probe, base_name, before_load))
    say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
