"""q1 and q2 at 50 concurrent against VictoriaMetrics and this service, taking turns on one loaded machine.

`PEERS_DIR=../shared/peers python -m tests.bench.peers_interleaved` (`make bench-peers-interleaved`; after
`make bench-peers`, which installs VictoriaMetrics and the harness's Python). Writes
docs/benchmarks-peers-interleaved.md.

`make bench-peers` runs the peers' queries, then this service's, minutes later; on this shared machine the speed
moves by up to 1.5x between minutes, and issue 13's query targets are ratios (q1 and q2 at 50 concurrent >= 0.6x
VictoriaMetrics). Here: a fresh stack of this service (as tests.bench.peers starts it: 2 gateway processes on one
port, every worker) plus a second pair of gateways with the query cache off, loaded with the harness's workload by
its own target client; then tests/bench/peers_alternate.py (the harness's Python) starts VictoriaMetrics, loads
the same workload, and runs q1 and q2 round by round against VictoriaMetrics, this service and this service
without the query cache, in alternating order. Each round's ratio is taken within the round; the table gives
every round and the median. VictoriaMetrics' range queries carry ``nocache=1`` (the harness's choice), so
"without the query cache" is the like-for-like q2; the default keeps answers (gateway/query_cache.py) and the
harness's picks repeat after the first round.
"""

import json
import os
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.bench_stack import bench_stack
from tests.bench.peers import GATEWAYS, peers_dir, say, start_uncached_gateways, start_with_gateways, workload_args

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-peers-interleaved.md"
ROUNDS = int(os.environ.get("BENCH_INTERLEAVED_ROUNDS", "4"))
VM = "victoria-metrics"
SYSTEMS = {"this service": "default gateways (query cache on)", "no query cache": "TELEMETRY_QUERY_CACHE_SIZE=0"}


def harness_python() -> Path:
    python = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv")) / "bin" / "python"
    if not python.exists() or not Path("/usr/bin/victoria-metrics").exists():
        raise SystemExit("peers_interleaved: run `make bench-peers` once first (it installs VictoriaMetrics and the "
                         f"harness's Python at {python.parent.parent})")  # fmt: skip
    return python


def run(peers: Path, run_dir: Path, args: list[str]) -> list[dict]:
    python = harness_python()
    env = dict(os.environ, BENCH_RUN_DIR=str(run_dir), BENCH_RESULTS=str(run_dir / "results.jsonl"))
    with bench_stack("telemetry-interleaved-") as (_root, _servers, stack):
        start_with_gateways(stack)
        uncached = start_uncached_gateways(stack)
        key = f"{next(iter(stack.headers))}: {next(iter(stack.headers.values()))}"
        try:
            say("loading this service with the harness's target client")
            load = [str(python), str(peers / "target.py"), "--base-url", stack.url, "--header", key, "--no-queries",
                    *args]  # fmt: skip
            subprocess.run(load, env=env, check=True)
            say(f"VictoriaMetrics and this service taking turns, {ROUNDS} rounds")
            cmd = [str(python), str(Path(__file__).with_name("peers_alternate.py")), "--peers-dir", str(peers),
                   "--header", key, "--rounds", str(ROUNDS), "--target", f"this service={stack.url}",
                   "--target", f"no query cache={uncached.url}", *args]  # fmt: skip
            subprocess.run(cmd, env=env, check=True)
        finally:
            uncached.stop_all()
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("section") == "alternate" and "round" in r]


def table(rows: list[dict], args: list[str]) -> str:
    rate = {(r["system"], r["query"], r["round"]): float(r["req_per_s"]) for r in rows}
    p99 = {(r["system"], r["query"], r["round"]): r.get("p99_ms") for r in rows}
    rounds = sorted({r["round"] for r in rows})
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# q1 and q2 at 50 concurrent: VictoriaMetrics and this service taking turns",
        "",
        f"Written by `python -m tests.bench.peers_interleaved` on {stamp} (workload arguments `{' '.join(args)}`; "
        f"{len(rounds)} rounds; {GATEWAYS} gateway processes per stack of this service, as `telemetry run` starts "
        "them). Both systems hold the peers harness's workload at once and answer the harness's q1 (latest value of "
        "one series) and q2 (one series in 1 h buckets) with the harness's aiohttp client at 50 concurrent, in an "
        "order alternating round by round; a ratio is taken within its round (the machine's speed drifts between "
        "minutes), then the median. See the module's docstring for the method.",
        "",
        "| query | system | req/s per round | p99 ms per round | vs VictoriaMetrics per round | median ratio |",
        "|---|---|---|---|---|---|",
    ]
    for q in ("q1", "q2"):
        for system in (VM, *SYSTEMS):
            rates = [rate.get((system, q, r)) for r in rounds]
            p99s = [p99.get((system, q, r)) for r in rounds]
            shown = " / ".join(f"{x:,.0f}" if x else "-" for x in rates)
            shown_p99 = " / ".join(f"{x:.1f}" if x else "-" for x in p99s)
            if system == VM:
                lines.append(f"| {q} | VictoriaMetrics | {shown} | {shown_p99} | - | - |")
                continue
            ratios = [x / v for x, v in zip(rates, (rate.get((VM, q, r)) for r in rounds), strict=True) if x and v]
            per = " / ".join(f"{x:.2f}x" for x in ratios)
            median = f"**{statistics.median(ratios):.2f}x**" if ratios else "-"
            lines.append(f"| {q} | {system} ({SYSTEMS[system]}) | {shown} | {shown_p99} | {per} | {median} |")
    lines += [
        "",
        "Issue 13's target: q1 and q2 at 50 concurrent >= 0.6x VictoriaMetrics' throughput in the same run. The "
        "harness's client (one Python process) uses about one core at this rate, so every system here is partly "
        "bound by it (the harness's NOTES.md, item 11).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    peers = peers_dir()
    run_dir = Path(tempfile.mkdtemp(prefix="telemetry-interleaved-run-"))
    args = workload_args()
    rows = run(peers, run_dir, args)
    text = table(rows, args)
    DOC.write_text(text)
    print(text)
    say(f"raw results: {run_dir / 'results.jsonl'}")


if __name__ == "__main__":
    main()
