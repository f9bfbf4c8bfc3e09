"""`make bench`: start a durable PostgreSQL, NATS and the stack in a temp dir, measure, write docs/benchmarks.md."""

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import uvloop

from telemetry_core.embedded import EmbeddedServer, start_nats, start_postgres
from telemetry_core.migrate import migrate
from tests.bench import extra
from tests.bench.alerts import (
    RULE_CONCURRENCY,
    AlertLagResult,
    AlertLoadResult,
    create_rules,
    evaluation_cost,
    quiet_rules,
    run_alert_lag,
    set_all_enabled,
    set_enabled,
)
from tests.bench.auth import GATEWAY_ENV, run_auth
from tests.bench.backlog import Backlog, alert_consumers
from tests.bench.baseline import prepare_baseline, run_baseline
from tests.bench.client import Poster, make_client
from tests.bench.config import BenchConfig
from tests.bench.data import METRICS
from tests.bench.definitions import (
    DefinitionsResult,
    GetResult,
    check_enforced,
    create_definitions,
    defined_names,
    names_for,
    round_order,
    run_get_latency,
    validation_cost,
)
from tests.bench.e2e import SustainedResult, build_batches, run_sustained, warm_up
from tests.bench.lag import run_lag
from tests.bench.latency import run_latency
from tests.bench.machine import machine_info
from tests.bench.procs import Monitor, PhaseCpu, Watched, merge_phases, vm_hwm
from tests.bench.profile import Profile, Profiler, py_spy
from tests.bench.queries import QUERIES, Dataset, QueriesResult, check_agreement, load, run_csv, run_query
from tests.bench.report import Results, observations, stdout_text, write_markdown
from tests.bench.stats import ms
from tests.support.servers import Servers
from tests.support.stack import PROCESSES, Stack

T = TypeVar("T")
DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


class Bench:
    """The phases, in order, against one running stack; each phase's CPU use is recorded."""

    def __init__(self, cfg: BenchConfig, stack: Stack, servers: Servers, monitor: Monitor, work_dir: Path) -> None:
        self.cfg = cfg
        self.stack = stack
        self.db = servers.database_url
        self.nats_url = servers.nats_url
        self.monitor = monitor
        self.work_dir = work_dir
        self.phases: list[PhaseCpu] = []
        self.profiles: list[Profile] = []
        self.extra_memory: list[tuple[str, int, str]] = []
        self.memory: list[tuple[str, int, str]] | None = None  # taken before the last phase swaps the worker
        self.waits: list[tuple[str, float, float]] = []  # (phase, seconds waited for quiet, other share then)

    async def quiet(self, name: str, max_s: float) -> None:
        """Wait (up to ``max_s``) until processes outside the stack use little CPU: other jobs on a shared
        machine come in bursts, and a phase started in one measures them as much as the stack."""
        if max_s <= 0:
            return
        t0 = time.monotonic()
        while True:
            before = self.monitor.snapshot()
            await asyncio.sleep(0.5)
            window = self.monitor.phase("quiet", before, self.monitor.snapshot())
            other = max(0.0, window.machine_busy_s - sum(window.cpu_s.values())) / window.wall_s
            waited = time.monotonic() - t0
            if other < self.cfg.quiet_share or waited >= max_s:
                break
        self.waits.append((name, waited, other))

    async def measured(
        self, name: str, fn: Callable[[], Awaitable[T]], quiet_s: float | None = None
    ) -> tuple[T, PhaseCpu]:
        await self.quiet(name, self.cfg.quiet_max_s if quiet_s is None else quiet_s)
        before = self.monitor.snapshot()
        result = await fn()
        return result, self.monitor.phase(name, before, self.monitor.snapshot())

    async def timed(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        result, phase = await self.measured(name, fn)
        self.phases.append(phase)
        return result

    def _profiler(self, names: Sequence[str] = ("gateway", "ingest-worker"), label: str = "") -> Profiler | None:
        if not self.cfg.profile:
            return None
        binary = py_spy()
        if binary is None:
            say("BENCH_PROFILE=1 but py-spy is not installed (.venv/bin/pip install py-spy): not profiling")
            return None
        pids = {f"{n}{label}": self.stack.procs[n].pid for n in names}
        return Profiler(binary, pids, self.work_dir / "profile")

    async def sustained(
        self,
        client: Poster,
        backlog: Backlog,
        prefix: str,
        phase: str | None,
        *,
        total: int | None = None,
        metrics: Sequence[str] = METRICS,
        profile: bool = False,
    ) -> tuple[SustainedResult, PhaseCpu]:
        """Build the bodies, then send them inside a CPU window that closes when the points are queryable.

        ``phase``: record the window under this name (None: the caller records it).
        """
        c = self.cfg
        batches = build_batches(prefix, total or c.points, c.batch_size, c.devices, metrics)
        await self.quiet(phase or prefix, c.quiet_max_s if phase is not None else c.quiet_max_s / 4)
        profiler = self._profiler() if profile else None
        if profiler is not None:
            profiler.start()
        try:
            s, cpu = await self.measured(
                phase or prefix,
                lambda: run_sustained(
                    client, self.db, backlog, batches, concurrency=c.concurrency, timeout_s=c.drain_timeout_s
                ),
                quiet_s=0,
            )
        finally:
            if profiler is not None:
                self.profiles += profiler.stop()
        batches.clear()
        if phase is not None:
            self.phases.append(cpu)
        # The projection catches up after the window (it is not on the queryable path).
        await backlog.wait_idle(c.drain_timeout_s)
        return s, cpu

    async def run(self) -> dict[str, object]:
        c = self.cfg
        out: dict[str, object] = {}
        backlog = await Backlog.connect(self.nats_url)
        size = max(c.concurrency, c.latency_concurrency, c.get_concurrency, c.query_concurrency, RULE_CONCURRENCY)
        client = make_client(c.client, self.stack.url, self.stack.headers, size)
        try:
            say(f"baseline: {c.baseline_points:,} points, COPY + upsert in {c.batch_size}-point transactions")
            prepared = prepare_baseline(c.baseline_points, c.batch_size, c.devices)
            out["baseline"] = base = await self.timed("baseline", lambda: run_baseline(self.db, prepared))
            prepared.clear()
            say(f"  {base.rate:,.0f} points/s")

            say("warm-up")
            await warm_up(client, self.db, backlog, c.concurrency * 2, c.concurrency)

            say(f"sustained: {c.points:,} points, {c.concurrency} clients, 1 ingest worker")
            s, _ = await self.sustained(client, backlog, "bench-e2e", "sustained", profile=True)
            out["sustained"] = s
            say(f"  {s.rate:,.0f} points/s queryable, {s.acked_rate:,.0f} points/s acknowledged")

            say(f"lag: {c.lag_batches} batches of {c.lag_batch_points}, one per {c.lag_interval_ms:g} ms")
            out["lag"] = await self.timed(
                "lag",
                lambda: run_lag(
                    client, self.db, batches=c.lag_batches, points=c.lag_batch_points,
                    interval_ms=c.lag_interval_ms, timeout_s=c.drain_timeout_s,
                ),
            )  # fmt: skip
            await backlog.wait_idle(c.drain_timeout_s)

            say(f"latency: {c.latency_requests:,} single-point POSTs at concurrency {c.latency_concurrency}")
            out["latency"] = await self.timed(
                "latency", lambda: run_latency(client, requests=c.latency_requests, concurrency=c.latency_concurrency)
            )
            await backlog.wait_idle(c.drain_timeout_s)

            out["definitions"], out["get"] = await self.definitions(client, backlog) if c.definitions else (None, None)
            out["scaled"] = await self.scaled(client, backlog) if c.extra_ingest_workers > 0 else None
            self.memory = self.monitor.memory() + self.extra_memory
            out["one_loop"] = await self.one_loop(client, backlog) if c.one_loop else None
            if c.query_points > 0:
                out["queries"] = await self.queries(client, backlog)
            out["alert_lag"], out["alert_load"] = await self.alerts(client, backlog)
            await backlog.wait_idle(c.drain_timeout_s)
            say("auth: JWT and database API key against a bootstrap key; key revocation propagation")
            authed = await self.timed("auth", lambda: run_auth(self.stack, self.stack.servers))
            for line in authed.lines():  # not in docs/benchmarks.md yet: the report's owner wires it in
                say(line)
        finally:
            await client.aclose()
            await backlog.close()
        return out

    async def definitions(self, client: Poster, backlog: Backlog) -> tuple[DefinitionsResult, GetResult]:
        """Create the definitions, then ingestion without / with them (ABBA), then GET-by-name latency."""
        c = self.cfg
        n = c.definitions
        say(f"definitions: creating {n} numeric definitions with min/max")
        result = DefinitionsResult(n, await create_definitions(client, defined_names(n)))
        await check_enforced(client, defined_names(n))
        await backlog.wait_idle(c.drain_timeout_s)
        say(f"  {result.create_s:.1f} s; enforced (an out-of-bounds point gets 422)")
        result.in_process_us = await validation_cost(backlog.js, n)
        say(
            "  in-process decode + check_points: "
            + ", ".join(f"{k} {v:.2f} µs" for k, v in result.in_process_us.items())
        )
        rounds = max(1, c.defs_rounds)
        segment = c.defs_points // (2 * rounds)
        cpu: dict[str, list[PhaseCpu]] = {}
        for rnd in range(rounds):
            for i, cond in enumerate(round_order(rnd)):
                s, phase = await self.sustained(
                    client, backlog, f"bench-defs-{rnd}-{i}-{cond}", None, total=segment, metrics=names_for(cond, n)
                )
                result.segments.append((rnd, cond, s))
                cpu.setdefault(cond, []).append(phase)
                say(f"  {cond:>7}: {s.rate:,.0f} points/s queryable, {s.acked_rate:,.0f} points/s accepted")
        for cond, label in (("none", "no definitions"), ("defined", f"{n} definitions")):
            merged = merge_phases(label, cpu[cond])
            self.phases.append(merged)
            result.gateway_cpu_s[cond] = merged.cpu_s.get("gateway", 0.0)
        say(f"  ratio defined/none: {result.ratio:.3f} queryable, {result.acked_ratio:.3f} accepted")

        say(f"GET metric by name: {c.get_requests:,} requests at concurrency {c.get_concurrency}")
        got = await self.timed(
            "GET by name",
            lambda: run_get_latency(client, defined_names(n), requests=c.get_requests, concurrency=c.get_concurrency),
        )
        return result, got

    async def scaled(self, client: Poster, backlog: Backlog) -> SustainedResult:
        """The sustained run again with more ingest-worker processes."""
        n = self.cfg.extra_ingest_workers + 1
        say(f"sustained: {self.cfg.points:,} points, {n} ingest workers")
        procs = extra.start_ingest_workers(self.stack, n - 1)
        names = [f"ingest-worker-{i + 2}" for i in range(n - 1)]
        try:
            await asyncio.sleep(2.0)  # let them connect and bind to the consumer
            for name, proc in zip(names, procs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}")
                self.monitor.watched.append(Watched(name, proc.pid))
            s, _ = await self.sustained(client, backlog, "bench-e2e-x", f"sustained, {n} workers")
            say(f"  {s.rate:,.0f} points/s queryable")
            peaks = zip(names, (vm_hwm(proc.pid) for proc in procs), strict=True)
            self.extra_memory = [(name, peak, "VmHWM (peak RSS)") for name, peak in peaks]
        finally:
            self.monitor.watched[:] = [w for w in self.monitor.watched if w.name not in names]
            extra.stop(procs)
        return s

    async def one_loop(self, client: Poster, backlog: Backlog) -> SustainedResult:
        """Last phase: replace the ingest worker by one with TELEMETRY_INGEST_CONCURRENCY=1, run sustained again."""
        say(f"sustained: {self.cfg.points:,} points, 1 ingest worker with 1 loop (TELEMETRY_INGEST_CONCURRENCY=1)")
        extra.stop([self.stack.procs["ingest-worker"]])  # SIGTERM: it finishes the batch in hand
        procs = extra.start_ingest_workers(self.stack, 1, {"TELEMETRY_INGEST_CONCURRENCY": "1"}, first=1)
        try:
            await asyncio.sleep(2.0)
            if procs[0].poll() is not None:
                raise RuntimeError(f"the 1-loop ingest worker exited with {procs[0].returncode}")
            # Same row in the CPU table: the stack's worker is gone, this one does its job.
            for w in self.monitor.watched:
                if w.name == "ingest-worker":
                    w.pid = procs[0].pid
            s, _ = await self.sustained(client, backlog, "bench-e2e-1", "sustained, 1 loop")
            say(f"  {s.rate:,.0f} points/s queryable")
        finally:
            extra.stop(procs)
        if self.cfg.query_points > 0 or self.cfg.alert_breaches > 0 or self.cfg.alert_points > 0:
            await self.restore_ingest_worker()
        return s

    async def restore_ingest_worker(self) -> None:
        """After the 1-loop phase: the stack's ingest worker again, with default settings, for the phases after."""
        self.stack.start("ingest-worker")
        await asyncio.sleep(2.0)
        proc = self.stack.procs["ingest-worker"]
        if proc.poll() is not None:
            raise RuntimeError(f"the restarted ingest worker exited with {proc.returncode}")
        for w in self.monitor.watched:
            if w.name == "ingest-worker":
                w.pid = proc.pid

    async def queries(self, client: Poster, backlog: Backlog) -> QueriesResult:
        """Load a week of points per series over HTTP, wait for the rollups, then time queries and exports."""
        c = self.cfg
        ds = Dataset.plan(c.query_points, c.query_metrics, c.query_step_min)
        say(
            f"queries: loading {ds.points:,} points = {ds.devices} devices x {ds.metrics} metrics x "
            f"{ds.per_series} (one per {ds.step_min} min over 7 d)"
        )
        loaded = await self.timed(
            "query load",
            lambda: load(
                client, self.db, backlog, ds, batch_size=c.query_batch, concurrency=c.concurrency,
                timeout_s=max(c.drain_timeout_s, ds.points / 5000),
            ),
        )  # fmt: skip
        say(
            f"  {loaded.queryable_rate:,.0f} points/s queryable ({loaded.queryable_s:.0f} s), every consumer "
            f"(rollups included) caught up after {loaded.caught_up_s:.0f} s"
        )
        agreement = await check_agreement(client, ds)
        say(
            f"  rollup and raw answers agree over {agreement.compared} buckets (avg within "
            f"{agreement.max_rel_avg:.1e}, p99 within {agreement.max_rel_p99:.2%})"
        )
        result = QueriesResult(ds, loaded, agreement, requests=c.query_requests, concurrency=c.query_concurrency)
        cpu: dict[bool, list[PhaseCpu]] = {False: [], True: []}
        for query in QUERIES:
            for raw in (False, True):  # unloaded: one request at a time
                alone, _ = await self.measured(
                    f"{query.key} alone",
                    lambda q=query, r=raw: run_query(  # type: ignore[misc]
                        client, ds, q, raw=r, requests=c.query_alone_requests, concurrency=1, max_s=c.query_max_s
                    ),
                    quiet_s=c.quiet_max_s / 4,
                )
                result.alone.append(alone)
            for raw in (False, True):
                run, phase = await self.measured(
                    f"{query.key} {'raw' if raw else 'rollup'}",
                    lambda q=query, r=raw: run_query(  # type: ignore[misc]
                        client,
                        ds,
                        q,
                        raw=r,
                        requests=c.query_requests,
                        concurrency=c.query_concurrency,
                        max_s=c.query_max_s,
                        min_s=c.query_min_s,
                    ),
                )
                run.cpu = phase
                cpu[raw].append(phase)
                result.runs.append(run)
                say(
                    f"  {query.key:>10} {'shifted' if raw else 'aligned'} ({run.source}): p50 {ms(run.p(50))}, "
                    f"p99 {ms(run.p(99))}, {run.rps:,.0f}/s"
                    + (f", {len(run.errors)} answered 503" if run.errors else "")
                )
        self.phases.append(merge_phases("queries, rollups", cpu[False]))
        self.phases.append(merge_phases("queries, raw", cpu[True]))
        result.csv = await self.timed("CSV export", lambda: run_csv(client, ds, c.csv_repeats))
        for e in result.csv:
            say(f"  CSV {e.key}: {e.rows_per_s:,.0f} rows/s ({e.rows_each:,} rows each)")
        return result

    async def alerts(self, client: Poster, backlog: Backlog) -> tuple[AlertLagResult | None, AlertLoadResult | None]:
        """Ack → alert latency; then ingestion with no enabled rule vs many, and whether the engine keeps up."""
        c = self.cfg
        lag = None
        if c.alert_breaches > 0:
            say(f"alerts: {c.alert_breaches} breaches, one at a time, polling GET /alerts every {c.alert_poll_ms:g} ms")
            lag = await self.timed(
                "alert latency", lambda: run_alert_lag(client, breaches=c.alert_breaches, poll_ms=c.alert_poll_ms)
            )
            say(f"  p50 {ms(lag.p('to_visible', 50))}, p99 {ms(lag.p('to_visible', 99))}")
            await set_enabled(client, lag.rule_id, False)  # from here on no rule is enabled
            await backlog.wait_idle(c.drain_timeout_s)
        if c.alert_points <= 0 or c.alert_rules <= 0:
            return lag, None
        per_metric = -(-c.alert_rules // len(METRICS))
        res = AlertLoadResult(c.alert_rules, per_metric, 0.0, drain_limit_s=c.alert_drain_max_s)
        res.in_process_us["none"] = await evaluation_cost(backlog.js, 0, METRICS, devices=20)
        say(f"alerts: ingestion without rules, {c.alert_points:,} points")
        res.none, _ = await self.sustained(client, backlog, "bench-al-none", "no rules", total=c.alert_points)
        say(f"  {res.none.rate:,.0f} points/s queryable, {res.none.acked_rate:,.0f} points/s accepted")
        say(f"alerts: creating {c.alert_rules} rules ({per_metric} per metric, never breached)")
        rule_ids, res.create_s, res.create_latencies = await create_rules(client, quiet_rules(c.alert_rules, METRICS))
        await backlog.wait_idle(c.drain_timeout_s)
        res.in_process_us["rules"] = await evaluation_cost(backlog.js, c.alert_rules, METRICS, devices=2)
        say(
            f"  {res.create_s:.1f} s; engine work in-process: {res.in_process_us['rules']:.1f} µs per point "
            f"(none: {res.in_process_us['none']:.2f} µs)"
        )
        say(f"alerts: ingestion with {c.alert_rules} enabled rules, {c.alert_points:,} points")
        batches = build_batches("bench-al-rules", c.alert_points, c.batch_size, c.devices, METRICS)
        res.points_per_message = c.batch_size
        await self.quiet(f"{c.alert_rules} rules", c.quiet_max_s)
        profiler = self._profiler(("alert-worker", "gateway", "ingest-worker"), f" ({c.alert_rules} rules)")
        if profiler is not None:
            profiler.start()
        try:
            res.with_rules, phase = await self.measured(
                f"{c.alert_rules} rules",
                lambda: run_sustained(
                    client, self.db, backlog, batches, concurrency=c.concurrency, timeout_s=c.drain_timeout_s
                ),
                quiet_s=0,
            )
            self.phases.append(phase)
            specs = alert_consumers()
            res.pending_at_end = sum([await backlog.pending_of(s) for s in specs])
            res.pending_max = max(res.with_rules.max_backlog.get(s.durable, 0) for s in specs)
            say(
                f"  {res.with_rules.rate:,.0f} points/s queryable, {res.with_rules.acked_rate:,.0f} accepted; "
                f"alert engine {res.pending_at_end} messages behind at the end"
            )
            (res.drain_s, res.drained_messages), drain = await self.measured(
                "alert drain", lambda: _drain(backlog, res.pending_at_end, c.alert_drain_max_s), quiet_s=0
            )
            self.phases.append(drain)
        finally:
            if profiler is not None:
                self.profiles += profiler.stop()
        batches.clear()
        say(
            f"  drained in {res.drain_s:.1f} s"
            if res.drain_s is not None
            else f"  not drained after {c.alert_drain_max_s:g} s ({res.drained_messages} messages acknowledged)"
        )
        say(f"alerts: disabling the {c.alert_rules} rules, then ingestion without rules again")
        await set_all_enabled(client, rule_ids, False)
        await backlog.wait_idle(c.drain_timeout_s)
        res.none_after, _ = await self.sustained(
            client, backlog, "bench-al-none-after", "no rules, after", total=c.alert_points
        )
        say(f"  {res.none_after.rate:,.0f} points/s queryable; with rules / mean without: {res.ratio:.3f}")
        return lag, res


async def _drain(backlog: Backlog, pending: int, limit_s: float) -> tuple[float | None, int]:
    """Wait until the alert engine's consumers have nothing pending: (seconds or None after limit_s, acked)."""
    specs = alert_consumers()
    t0 = time.perf_counter()
    left = pending
    while True:
        left = sum([await backlog.pending_of(s) for s in specs])
        if left == 0:
            return time.perf_counter() - t0, pending
        if time.perf_counter() - t0 > limit_s:
            return None, pending - left
        await asyncio.sleep(0.05)


def _peaks(*readings: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The larger reading per process: the ingest worker is replaced by the last phases, so the peaks are
    read before that and again at the end."""
    out: dict[str, tuple[str, int, str]] = {}
    for reading in readings:
        for name, peak, how in reading:
            if name not in out or peak > out[name][1]:
                out[name] = (name, peak, how)
    return list(out.values())


def _stop(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        say(f"stopping {what} failed:\n{traceback.format_exc()}")


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    cfg = BenchConfig.from_env()
    signal.signal(signal.SIGTERM, _on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="telemetry-bench-"))
    keep = os.environ.get("BENCH_KEEP", "") == "1"
    nats: EmbeddedServer | None = None
    postgres: EmbeddedServer | None = None
    stack: Stack | None = None
    monitor: Monitor | None = None
    try:
        say(f"starting nats-server and a durable PostgreSQL under {root}")
        nats = start_nats(root / "nats")
        postgres = start_postgres(root / "postgres", durable=True)
        migrate(postgres.url)
        servers = Servers(nats, postgres)
        # The query cache off: the query phases measure the database (the cache: tests/bench/fast_reads.py).
        stack = Stack(
            servers, root / "logs", extra_env={**GATEWAY_ENV, "TELEMETRY_QUERY_CACHE_SIZE": "0"}, suite_settings=False
        )
        stack.start_all()
        watched = [Watched(name, stack.procs[name].pid) for name in PROCESSES]
        watched += [Watched("nats-server", nats.proc.pid), Watched("postgres", postgres.proc.pid, tree=True)]
        monitor = Monitor(watched)
        monitor.start()
        bench = Bench(cfg, stack, servers, monitor, root)
        measured = uvloop.run(bench.run())
        results = Results(
            config=cfg,
            machine=machine_info(postgres.url, root, stack.env()),
            memory=_peaks(bench.memory or [], monitor.memory() + bench.extra_memory),
            phases=bench.phases,
            profiles=bench.profiles,
            waits=bench.waits,
            **measured,  # type: ignore[arg-type]
        )
        results.notes = observations(results)
        print()
        print(stdout_text(results))
        write_markdown(results, DOC)
        say(f"wrote {DOC}")
    except BaseException:
        if stack is not None:
            for name in PROCESSES:
                sys.stderr.write(f"--- {name} log tail ---\n{stack.log_tail(name)}\n")
        raise
    finally:
        if monitor is not None:
            monitor.stop()
        if stack is not None:
            _stop("the stack", stack.stop_all)
        if postgres is not None:
            _stop("postgres", postgres.stop)
        if nats is not None:
            _stop("nats-server", nats.stop)
        if keep:
            say(f"kept {root} (logs under {root / 'logs'})")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
