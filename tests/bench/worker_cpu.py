"""The ingest worker's and PostgreSQL's CPU per point, an older checkout against this one, in one run (issue 13 item 3).

First the in-process probe (tests/bench/worker_cpu_probe.py: the ingest handler alone), then the end-to-end
sustained run, both alternated A B B A.

`BENCH_BASE_TREE=<checkout of the older commit, with its .venv> python -m tests.bench.worker_cpu` writes
docs/benchmarks-workercpu.md: for each tree its own NATS + durable PostgreSQL (migrated by that tree's code)
and its own stack (gateway, ingest worker, projection worker, alert engine run by that tree's Python), then
rounds A B B A (BENCH_WC_ROUNDS times): 1000-point batches of one device (BENCH_POINTS, BENCH_DEVICES,
BENCH_CONCURRENCY as tests/bench/config.py), the queryable rate, and each process's CPU per point inside the
window that closes when every acknowledged point is queryable. Only ratios mean anything on a shared machine:
the load average of each round is printed beside it. Make one base tree with
`git worktree add --detach /tmp/base <commit> && make -C /tmp/base install`.
"""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from telemetry_core.embedded import EmbeddedServer, start_nats, start_postgres
from tests.bench.auth import GATEWAY_ENV
from tests.bench.backlog import Backlog
from tests.bench.client import Poster, make_client
from tests.bench.config import env_int
from tests.bench.e2e import build_batches, run_sustained, warm_up
from tests.bench.procs import Monitor, Watched
from tests.support.servers import Servers
from tests.support.stack import PROCESSES, Stack

HERE = Path(__file__).resolve().parents[2]
DOC = HERE / "docs" / "benchmarks-workercpu.md"
SHOWN = ("gateway", "ingest-worker", "postgres", "alert-worker", "nats-server", "projection-worker")


def say(message: str) -> None:
    print(f"[worker-cpu] {message}", flush=True)


class TreeStack(Stack):
    """A Stack whose processes run from another checkout, with that checkout's virtualenv."""

    tree: Path = HERE

    def start(self, name: str, label: str | None = None, **env: str) -> None:
        label = label or name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{label}.log").open("ab")
        python = self.tree / ".venv" / "bin" / "python"
        self.procs[label] = subprocess.Popen(
            [str(python), "-m", "telemetry_core.cli", name],
            env={**self.env(), **env},
            cwd=self.tree,
            stdout=log,
            stderr=log,
        )
        log.close()

    def start_all(self, names: tuple[str, ...] = PROCESSES) -> "Stack":
        for name in names:
            self.start(name)
        self.wait_healthy(timeout=300.0)  # a loaded shared machine starts a stack slowly
        return self


@dataclass
class Tree:
    name: str
    path: Path
    nats: EmbeddedServer
    postgres: EmbeddedServer
    stack: TreeStack
    monitor: Monitor
    rates: list[float] = field(default_factory=list)
    cpu_us: list[dict[str, float]] = field(default_factory=list)  # per round: process -> CPU µs per point
    loads: list[float] = field(default_factory=list)
    retries: int = 0  # POSTs sent again after a 503


class Retrying:
    """A Poster that sends a POST again after a 503 (JetStream slow to acknowledge on a loaded machine).

    Nothing was stored when the gateway answers 503, so a retry sends each point once; retries are counted.
    """

    def __init__(self, inner: Poster) -> None:
        self.inner = inner
        self.retries = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        while True:
            status, data = await self.inner.post(path, body)
            if status != 503 or b"shedding load" in data or self.retries > 1000:
                return status, data
            self.retries += 1
            await asyncio.sleep(0.2)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.inner.get(path)

    async def put(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.inner.put(path, body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def start_tree(name: str, path: Path, root: Path) -> Tree:
    """Servers migrated by ``path``'s own code, and its stack."""
    nats = start_nats(root / name / "nats")
    postgres = start_postgres(root / name / "postgres", durable=True)
    env = {**os.environ, "DATABASE_URL": postgres.url}
    subprocess.run([str(path / ".venv/bin/python"), "-m", "telemetry_core.cli", "migrate"], env=env, cwd=path,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    stack = TreeStack(Servers(nats, postgres), root / name / "logs", extra_env=GATEWAY_ENV, suite_settings=False)
    stack.tree = path
    try:
        stack.start_all()
    except BaseException:
        stack.stop_all()
        nats.stop()
        postgres.stop()
        raise
    watched = [Watched(n, stack.procs[n].pid) for n in PROCESSES]
    watched += [Watched("nats-server", nats.proc.pid), Watched("postgres", postgres.proc.pid, tree=True)]
    return Tree(name, path, nats, postgres, stack, Monitor(watched))


async def one_round(tree: Tree, round_no: int, points: int, devices: int, concurrency: int) -> None:
    stack = tree.stack
    client = Retrying(make_client("httpx", stack.url, stack.headers, concurrency))
    backlog = await Backlog.connect(stack.servers.nats_url)
    try:
        if not tree.rates:  # each tree's first round: connections, partitions, caches
            await warm_up(client, stack.servers.database_url, backlog, concurrency * 2, concurrency)
        batches = build_batches(f"wc-{round_no}", points, 1000, devices)
        load = os.getloadavg()[0]
        before = tree.monitor.snapshot()
        result = await run_sustained(client, stack.servers.database_url, backlog, batches,
                                     concurrency=concurrency, timeout_s=600)  # fmt: skip
        phase = tree.monitor.phase(f"{tree.name} {round_no}", before, tree.monitor.snapshot())
        await backlog.wait_idle(300)  # projections and alerts catch up outside the window
    finally:
        await client.aclose()
        await backlog.close()
    tree.rates.append(result.rate)
    tree.cpu_us.append({k: v / result.points_acked * 1e6 for k, v in phase.cpu_s.items()})
    tree.loads.append((load + os.getloadavg()[0]) / 2)
    tree.retries += client.retries
    say(f"{tree.name} round {round_no}: {result.rate:,.0f} points/s queryable, load {tree.loads[-1]:.1f}, "
        + ", ".join(f"{k} {tree.cpu_us[-1].get(k, 0):.1f}" for k in SHOWN) + " us/pt")  # fmt: skip


def run_probe(path: Path, messages: int) -> dict[str, float]:
    """tests/bench/worker_cpu_probe.py (this tree's file) run by ``path``'s Python on ``path``'s code."""
    env = {**os.environ, "PYTHONPATH": str(path), "BENCH_PROBE_MESSAGES": str(messages)}
    out = subprocess.run([str(path / ".venv/bin/python"), str(Path(__file__).with_name("worker_cpu_probe.py"))],
                         env=env, cwd=path, check=True, capture_output=True, text=True)  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = os.getloadavg()[0]
    return result


def probes(base_path: Path, rounds: int, messages: int) -> dict[str, list[dict[str, float]]]:
    """The in-process probe, A B B A ``rounds`` times."""
    out: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    for _ in range(rounds):
        for name, path in (("base", base_path), ("this", HERE), ("this", HERE), ("base", base_path)):
            r = run_probe(path, messages)
            out[name].append(r)
            say(f"probe {name}: worker {r['worker_us']:.2f} us/pt, postgres {r['postgres_us']:.2f} us/pt, "
                f"load {r['load']:.1f}")  # fmt: skip
    return out


def probe_report(found: dict[str, list[dict[str, float]]], messages: int) -> list[str]:
    lines = [
        "## In-process probe: the ingest handler alone (no HTTP, no other consumers)",
        "",
        f"`tests/bench/worker_cpu_probe.py`, run by each tree's own Python on its own servers: {messages} signed "
        "1000-point messages of one device (50 devices) published first, then the real IngestHandler over "
        "fetches of 64 with acks; CPU of the probe process (worker) and of every PostgreSQL process per point. "
        "Rounds A B B A.",
        "",
        "| round | tree | worker µs/pt | postgres µs/pt | load avg |",
        "|---|---|---|---|---|",
    ]
    i = 0
    for k in range(len(found["base"]) // 2):
        for name, j in (("base", 2 * k), ("this", 2 * k), ("this", 2 * k + 1), ("base", 2 * k + 1)):
            r = found[name][j]
            i += 1
            lines.append(f"| {i} | {name} | {r['worker_us']:.2f} | {r['postgres_us']:.2f} | {r['load']:.1f} |")
    lines.append("")
    for key, label in (("worker_us", "worker"), ("postgres_us", "postgres")):
        b, t = mean([r[key] for r in found["base"]]), mean([r[key] for r in found["this"]])
        lines.append(f"* {label}: base {b:.2f}, this {t:.2f} µs/pt: **{t / b:.2f}x**")
    lines.append("")
    return lines


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def report(base: Tree, this: Tree, points: int, devices: int, concurrency: int, base_name: str,
           probe_lines: list[str]) -> str:  # fmt: skip
    rate = mean(this.rates) / mean(base.rates)
    lines = [
        "# Ingest worker and its SQL: CPU per point, before / after (issue 13 item 3)",
        "",
        f"`python -m tests.bench.worker_cpu`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Base: `{base_name}`; "
        "this: the checkout that ran it. Each tree has its own NATS and durable PostgreSQL (migrated by its own "
        f"code) and its own stack; rounds alternate A B B A. Each round: {points:,} points in 1000-point batches "
        f"of one device ({devices} devices, {concurrency} concurrent HTTP clients); the CPU window closes when "
        "every acknowledged point is queryable. A shared 2-core machine: only the ratios mean anything.",
        "",
        "| round order | tree | queryable points/s | load avg |",
        "|---|---|---|---|",
    ]
    order = [(base, 0), (this, 0), (this, 1), (base, 1)] * (len(base.rates) // 2)
    seen = {base.name: 0, this.name: 0}
    for i, (tree, _) in enumerate(order):
        k = seen[tree.name]
        seen[tree.name] += 1
        lines.append(f"| {i + 1} | {tree.name} | {tree.rates[k]:,.0f} | {tree.loads[k]:.1f} |")
    lines += [
        "",
        f"**Queryable rate: {rate:.2f}x** the base (mean of its rounds over the base's). POSTs retried after a "
        f"503 (JetStream slow to acknowledge under load; nothing stored): base {base.retries}, this {this.retries}.",
        "",
        "CPU per point (µs, mean of the rounds; postgres = postmaster and every backend):",
        "",
        "| process | base | this | ratio |",
        "|---|---|---|---|",
    ]
    total_b = total_t = 0.0
    for name in SHOWN:
        b = mean([r.get(name, 0.0) for r in base.cpu_us])
        t = mean([r.get(name, 0.0) for r in this.cpu_us])
        total_b, total_t = total_b + b, total_t + t
        lines.append(f"| {name} | {b:.1f} | {t:.1f} | {t / b if b else 0:.2f}x |")
    lines.append(f"| all of the above | {total_b:.1f} | {total_t:.1f} | {total_t / total_b:.2f}x |")
    lines.append("")
    return "\n".join(lines + probe_lines)


def main() -> None:
    if not os.environ.get("BENCH_BASE_TREE"):
        say("BENCH_BASE_TREE is not set (a checkout of the commit to compare with, with its .venv): skipped")
        return
    base_path = Path(os.environ["BENCH_BASE_TREE"]).resolve()
    base_name = os.environ.get("BENCH_BASE_NAME", str(base_path))
    points, devices = env_int("BENCH_POINTS", 500_000), env_int("BENCH_DEVICES", 50)
    concurrency, rounds = env_int("BENCH_CONCURRENCY", 8), env_int("BENCH_WC_ROUNDS", 1)
    probe_rounds, probe_messages = env_int("BENCH_WC_PROBE_ROUNDS", 2), env_int("BENCH_PROBE_MESSAGES", 256)
    found = probes(base_path, probe_rounds, probe_messages)
    probe_lines = probe_report(found, probe_messages)
    root = Path(tempfile.mkdtemp(prefix="bench-workercpu-"))
    trees: list[Tree] = []
    try:
        for name, path in (("base", base_path), ("this", HERE)):
            say(f"starting {name} from {path}")
            trees.append(start_tree(name, path, root))
        base, this = trees
        for t in trees:
            t.monitor.start()
        n = 0
        for _ in range(rounds):
            for tree in (base, this, this, base):
                asyncio.run(one_round(tree, n, points, devices, concurrency))
                n += 1
        DOC.write_text(report(base, this, points, devices, concurrency, base_name, probe_lines))
        say(f"wrote {DOC}")
    finally:
        for t in trees:
            t.monitor.stop()
            t.stack.stop_all()
            t.nats.stop()
            t.postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
