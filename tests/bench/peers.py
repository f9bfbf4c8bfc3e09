"""This service beside InfluxDB and VictoriaMetrics on one workload, in one run (`make bench-peers`).

The peers harness (InfluxDB 1.x and VictoriaMetrics from Debian's packages, the workload generator, the
query loops) is not part of this repository: point ``PEERS_DIR`` at it (the Makefile defaults to
``../shared/peers``, beside the repository). Nothing else in the project needs it.

One run, in this order, with the same workload arguments and a pinned base time:
1. ``run_peers.sh --only tsdb``: the peers ingest the workload (acked, then visible to a count query) and
   answer q1 (latest value of one series), q2 (one series in 1 h buckets), q3 (avg over all devices of one
   metric in 1 min buckets), sequentially and at 50 concurrent requests;
2. a fresh stack of this service (private NATS with fsync always + PostgreSQL, every worker) and
   ``run_peers.sh --target``: the same bodies from the same client, then the same three queries;
3. another fresh stack, sent the bodies InfluxDB got, byte for byte, on ``POST /write?precision=s``
   (tests/bench/peers_line.py, run with the harness's Python).

The stacks run their gateway as `telemetry run` does: one process per core on one port (BENCH_PEERS_GATEWAYS).
Between 2 and 3, a second gateway with the query cache off (TELEMETRY_QUERY_CACHE_SIZE=0) joins the stack of 2,
which holds the data, and the harness's query loop (tests/bench/peers_queries.py) runs against it, then against
the first gateway again: q2 without the cache and with it, on the same data and the same quiet stack.

The side-by-side table, with this service's figures as ratios to the best peer, replaces the
"## Side by side with InfluxDB and VictoriaMetrics" section of docs/benchmarks.md (kept by tests.bench.run).

    PEERS_DIR=../shared/peers .venv/bin/python -m tests.bench.peers
    BENCH_PEERS_QUICK=1 BENCH_PEERS_ARGS="-D 50" …   # a smoke run (about 2 minutes)
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telemetry_core.embedded import free_port
from tests.bench.bench_stack import bench_stack
from tests.bench.peers_cpu import CpuSampler, cpu_line, ingest_window
from tests.support.stack import PROCESSES, Stack

# As `telemetry run` starts the gateway (TELEMETRY_GATEWAY_PROCESSES, default: cores): that many processes on one
# port (SO_REUSEPORT). BENCH_PEERS_GATEWAYS overrides it (1: one process, as runs before 2026-12-04 had).
GATEWAYS = int(os.environ.get("BENCH_PEERS_GATEWAYS", "0")) or os.cpu_count() or 1


def start_with_gateways(stack: Stack, workers: bool = True) -> None:
    """The stack's gateway as GATEWAYS processes on its port, and (``workers``) every worker."""
    if workers:
        for name in PROCESSES:
            if name != "gateway":
                stack.start(name)
    for i in range(GATEWAYS):
        stack.start("gateway", label=f"gateway-{i}", TELEMETRY_GATEWAY_REUSE_PORT="on")
    stack.wait_healthy(timeout=300)


def start_uncached_gateways(stack: Stack) -> Stack:
    """A second stack's gateways on ``stack``'s servers and workers, with TELEMETRY_QUERY_CACHE_SIZE=0, started."""
    uncached = Stack(stack.servers, stack.log_dir, port=free_port(), extra_env={"TELEMETRY_QUERY_CACHE_SIZE": "0"},
                     suite_settings=False)  # fmt: skip
    start_with_gateways(uncached, workers=False)
    return uncached


REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks.md"
HEADING = "## Side by side with InfluxDB and VictoriaMetrics"
NO_CACHE = "target without query cache"
CACHE_AGAIN = "target with query cache, again"
PEERS = {"influx": "influxdb /write (line protocol, precision=s)", "vm": "victoria-metrics /api/v1/import"}


def say(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peers_dir() -> Path:
    raw = os.environ.get("PEERS_DIR", str(REPO.parent / "shared" / "peers"))
    path = Path(raw).resolve()
    if not (path / "run_peers.sh").is_file():
        raise SystemExit(f"bench-peers: no peers harness at {path} (set PEERS_DIR to the folder holding run_peers.sh)")
    return path


def workload_args() -> list[str]:
    """The workload both sides get (``BENCH_PEERS_ARGS``: -D/-M/-T/--batch-size/--concurrency only, which the
    harness's peers and target modes both take); the base time is a whole hour 2 h back, pinned for both."""
    base = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    extra = shlex.split(os.environ.get("BENCH_PEERS_ARGS", ""))
    return ["--base-time", base.strftime("%Y-%m-%dT%H:%M:%SZ"), "--runs", os.environ.get("BENCH_PEERS_RUNS", "1"),
            *extra]  # fmt: skip


def quick() -> tuple[list[str], list[str]]:
    """``BENCH_PEERS_QUICK=1``: fewer query requests on both sides (peers' --quick, the target's counts to match)."""
    if os.environ.get("BENCH_PEERS_QUICK") != "1":
        return [], []
    return ["--quick"], ["--seq-requests", "100", "--conc-requests", "300"]


def harness(peers: Path, run_dir: Path, args: list[str]) -> None:
    env = dict(os.environ, BENCH_RUN_DIR=str(run_dir))
    cmd = ["bash", str(peers / "run_peers.sh"), *args]
    say(" ".join(cmd))
    subprocess.run(cmd, env=env, check=True)


def run_ours(peers: Path, run_dir: Path, args: list[str], line_protocol: bool = False) -> None:
    """A fresh stack, then the JSON target (and the queries) or, with ``line_protocol``, InfluxDB's bodies."""
    with bench_stack("telemetry-peers-") as (_root, servers, stack):
        start_with_gateways(stack)
        pids = [p.pid for p in stack.procs.values()]
        pids += [s.proc.pid for s in (servers.nats, servers.postgres) if hasattr(s, "proc")]
        key = f"{next(iter(stack.headers))}: {next(iter(stack.headers.values()))}"
        pid_args = [a for pid in pids for a in ("--server-pid", str(pid))]
        python = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv")) / "bin" / "python"
        results = dict(os.environ, BENCH_RESULTS=str(run_dir / "results.jsonl"))
        if not line_protocol:
            watched = {label: (proc.pid, False) for label, proc in stack.procs.items()}
            for name, server in (("nats", servers.nats), ("postgres", servers.postgres)):
                if hasattr(server, "proc"):  # PostgreSQL as its whole tree: the backends are its children
                    watched[name] = (server.proc.pid, name == "postgres")
            with CpuSampler(watched) as sampler:
                harness(peers, run_dir, ["--target", stack.url, "--header", key, *pid_args, *args])
            record_ingest_cpu(run_dir / "results.jsonl", sampler)
            uncached = start_uncached_gateways(stack)
            try:
                # The harness's queries ran right after its ingestion, while projections may still be working:
                # the two gateways are compared on the quiet stack, without the cache, then with it again.
                say("the queries again, from a second gateway without the query cache, then from the first again")
                queried = [*pids, *(p.pid for p in uncached.procs.values())]
                pid_args = [a for pid in queried for a in ("--server-pid", str(pid))]
                for url, label in ((uncached.url, NO_CACHE), (stack.url, CACHE_AGAIN)):
                    cmd = [str(python), str(Path(__file__).with_name("peers_queries.py")), "--peers-dir", str(peers),
                           "--base-url", url, "--header", key, "--label", label, *pid_args, *args]  # fmt: skip
                    subprocess.run(cmd, env=results, check=True)
            finally:
                uncached.stop_all()
            return
        cmd = [str(python), str(Path(__file__).with_name("peers_line.py")), "--peers-dir", str(peers),
               "--base-url", stack.url, "--header", key, *args]  # fmt: skip
        say("InfluxDB's line-protocol bodies to our /write")
        subprocess.run(cmd, env=results, check=True)


def record_ingest_cpu(results: Path, sampler: CpuSampler) -> None:
    """Add this service's CPU per point during the harness's ingestion to its results (row "target ingest cpu")."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    ingest = next((r for r in reversed(rows) if r.get("name") == "target ingest" and r.get("visible_s")), None)
    if ingest is None:
        say("no target ingest row with visible_s: CPU per point not recorded")
        return
    start, end = ingest_window(ingest)
    per_point = sampler.per_point(start, end, int(ingest.get("points_sent") or 1))
    row = {"section": "target", "name": "target ingest cpu", "us_per_point": per_point, "window_s": end - start}
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")
    say(f"CPU per point while ingesting: {cpu_line(per_point)}")


@dataclass
class Figures:
    """One system's figures: points/s acked and visible, and per query (sequential p50/p99, c=50 req/s, p99)."""

    acked: float | None = None
    visible: float | None = None
    seq: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    conc: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def figures(rows: list[dict], section: str, ingest: str, query: str) -> Figures:
    by_name = {r["name"]: r for r in rows if r.get("section") == section}
    f = Figures()
    ing = by_name.get(ingest, {})
    f.acked = ing.get("points_per_s_acked", ing.get("points_per_s"))
    f.visible = ing.get("points_per_s_visible")
    for q in ("q1", "q2", "q3"):
        seq = by_name.get(query.format(q=q, kind="sequential" if section == "tsdb" else "c=1"), {})
        conc = by_name.get(query.format(q=q, kind="c=50"), {})
        if seq:
            f.seq[q] = (seq.get("p50_ms"), seq.get("p99_ms"))
        if conc:
            f.conc[q] = (conc.get("req_per_s"), conc.get("p99_ms"))
    return f


def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def _ratio(ours: float | None, best: float | None, lower_is_better: bool = False) -> str:
    if not ours or not best:
        return "-"
    r = best / ours if lower_is_better else ours / best
    return f"**{r:.2f}x**" if r >= 1 else f"{r:.2f}x"


def table(rows: list[dict], args: list[str]) -> str:
    influx = figures(rows, "tsdb", f"ingest {PEERS['influx']}", PEERS["influx"] + " {q} {kind}")
    vm = figures(rows, "tsdb", f"ingest {PEERS['vm']}", PEERS["vm"] + " {q} {kind}")
    ours = figures(rows, "target", "target ingest", "target {q} {kind}")
    workload = next((r for r in rows if r.get("section") == "tsdb" and r.get("name") == "workload"), {})
    lines = [
        HEADING,
        "",
        f"`make bench-peers`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, one run on this machine: the peers harness's "
        f"workload ({workload.get('devices', '?')} devices x {workload.get('metrics', '?')} metrics x "
        f"{workload.get('timestamps', '?')} timestamps = {workload.get('total_points', '?'):,} points in batches of "
        f"one device, 16 connections; arguments `{' '.join(args)}`) sent by the same aiohttp client to InfluxDB, "
        f"VictoriaMetrics and this service (private NATS with fsync always, PostgreSQL, one copy of every worker, "
        f"{GATEWAYS} gateway process{'es' if GATEWAYS > 1 else ''} on one port as `telemetry run` starts them; "
        "before 2026-12-04 one). Visible = until a count query returns every point. Ratio = this service against the best "
        "peer (above 1 = ahead; for latencies, best peer's ms / ours).",
        "",
        "| figure | InfluxDB | VictoriaMetrics | this service | vs the best |",
        "|---|---|---|---|---|",
    ]
    best = max(filter(None, (influx.acked, vm.acked)), default=None)
    lines.append(f"| ingest, acked points/s | {_num(influx.acked)} | {_num(vm.acked)} | {_num(ours.acked)} | "
                 f"{_ratio(ours.acked, best)} |")  # fmt: skip
    best = max(filter(None, (influx.visible, vm.visible)), default=None)
    lines.append(f"| ingest, visible points/s | {_num(influx.visible)} | {_num(vm.visible)} | {_num(ours.visible)} | "
                 f"{_ratio(ours.visible, best)} |")  # fmt: skip
    cpu = next((r for r in reversed(rows) if r.get("name") == "target ingest cpu"), None)
    if cpu is not None:
        lines.append(
            f"| this service's CPU while ingesting, µs per point | - | - | {cpu_line(cpu['us_per_point'])} | - |"
        )
    line = figures(rows, "target", "target line protocol ingest", "-")
    lines.append(f"| line protocol (InfluxDB's `/write` bodies), visible points/s | {_num(influx.visible)} | - | "
                 f"{_num(line.visible)} | {_ratio(line.visible, influx.visible)} of InfluxDB |")  # fmt: skip
    uncached = figures(rows, "target", f"{NO_CACHE} ingest", NO_CACHE + " {q} {kind}")
    again = figures(rows, "target", f"{CACHE_AGAIN} ingest", CACHE_AGAIN + " {q} {kind}")
    for q in ("q1", "q2", "q3"):
        cells = [p.seq.get(q) for p in (influx, vm, ours)]
        text = [f"{_num(c[0])} / {_num(c[1])}" if c else "-" for c in cells]
        best_p50 = min((c[0] for c in cells[:2] if c and c[0]), default=None)
        lines.append(f"| {q} sequential p50 / p99 ms | {text[0]} | {text[1]} | {text[2]} | "
                     f"p50 {_ratio(cells[2][0] if cells[2] else None, best_p50, lower_is_better=True)} |")  # fmt: skip
        cells = [p.conc.get(q) for p in (influx, vm, ours)]
        text = [f"{_num(c[0], 0)} ({_num(c[1], 1)})" if c else "-" for c in cells]
        best_rate = max((c[0] for c in cells[:2] if c and c[0]), default=None)
        lines.append(f"| {q} at 50 concurrent: req/s (p99 ms) | {text[0]} | {text[1]} | {text[2]} | "
                     f"{_ratio(cells[2][0] if cells[2] else None, best_rate)} |")  # fmt: skip
        if q == "q1" and "q1" in again.conc:  # the same first gateway once the projections are done: its caches warm
            seq, conc = again.seq.get("q1"), again.conc["q1"]
            lines.append(f"| q1 again (quiet stack, the first gateway): sequential p50 / p99 ms; at 50 concurrent "
                         f"req/s (p99 ms) | - | - | {_num(seq[0]) if seq else '-'} / {_num(seq[1]) if seq else '-'}; "
                         f"{_num(conc[0], 0)} ({_num(conc[1], 1)}) | p50 "
                         f"{_ratio(seq[0] if seq else None, best_p50, lower_is_better=True)}; "
                         f"{_ratio(conc[0], best_rate)} |")  # fmt: skip
        for other, what in ((uncached, "without the query cache"), (again, "with the query cache, again")):
            if q != "q2" or "q2" not in other.conc:
                continue
            seq, conc = other.seq.get("q2"), other.conc["q2"]
            lines.append(f"| q2 {what} (quiet stack): sequential p50 / p99 ms; at 50 concurrent req/s (p99 ms) "
                         f"| - | - | {_num(seq[0]) if seq else '-'} / {_num(seq[1]) if seq else '-'}; "
                         f"{_num(conc[0], 0)} ({_num(conc[1], 1)}) | {_ratio(conc[0], best_rate)} |")  # fmt: skip
    lines += [
        "",
        "q1 = latest value of one series; q2 = one series in 1 h buckets; q3 = avg over all devices of one metric "
        "in 1 min buckets. CPU while ingesting: each of this service's processes (PostgreSQL as its whole process "
        "tree, backends opened and closed during the load included; tests/bench/peers_cpu.py) over the ingestion's "
        "window, per point sent; 2 cores divided by the machine's figure is the visible rate the CPU allows. "
        "The peers' VictoriaMetrics visible rate waits for its 10 s flush (the harness also "
        "records a run with a forced flush). This service runs with its defaults, the query cache included "
        "(gateway/query_cache.py: one-series POST /query answers kept until a stored notice of that series and range; "
        "the harness's q2 rotates over 1,000 series, so its first 1,000 requests compute and later ones repeat); the "
        'rows "(quiet stack)" come after the harness\'s own queries, which run right after its ingestion while '
        "projections may still be working: a second gateway with TELEMETRY_QUERY_CACHE_SIZE=0 on the same stack, then "
        "the first gateway again (its cache holds the harness's answers by then), the same queries from the same "
        'client; the row "q1 again" is the last of those passes (the first gateway, its latest-value cache warm). '
        "VictoriaMetrics caches query results too (its rollup result cache, on by default). Raw figures: the "
        "harness's results.jsonl of the run. The peers' queries run minutes before ours, and this machine's speed "
        "drifts between minutes: docs/benchmarks-peers-interleaved.md (`make bench-peers-interleaved`) measures q1 "
        "and q2 with VictoriaMetrics and this service taking turns round by round.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, path: Path = DOC) -> None:
    """Replace (or add, before "## Method") the side-by-side section of docs/benchmarks.md."""
    old = path.read_text() if path.exists() else ""
    start = old.find(HEADING)
    if start >= 0:
        end = old.find("\n## ", start + len(HEADING))
        new = old[:start] + section.rstrip() + "\n" + (old[end:] if end >= 0 else "")
    elif "\n## Method" in old:
        new = old.replace("\n## Method", "\n" + section.rstrip() + "\n\n## Method", 1)
    else:
        new = old.rstrip() + "\n\n" + section
    path.write_text(new)


def main() -> None:
    peers = peers_dir()
    run_dir = Path(tempfile.mkdtemp(prefix="telemetry-peers-run-"))
    args, (peer_quick, target_quick) = workload_args(), quick()
    harness(peers, run_dir, ["--only", "tsdb", *args, *peer_quick])
    run_ours(peers, run_dir, [*args, *target_quick])
    run_ours(peers, run_dir, args, line_protocol=True)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    section = table(rows, args)
    write_section(section)
    print(section)
    say(f"raw results: {run_dir / 'results.jsonl'}")


if __name__ == "__main__":
    main()
