"""Rows, observations and method text of the query and alerting sections (see report.py for the rest)."""

import math

from gateway.query_plan import SKETCH_RELATIVE_ERROR
from tests.bench.alerts import RULE_CONCURRENCY, AlertLagResult, AlertLoadResult
from tests.bench.config import BenchConfig
from tests.bench.procs import PhaseCpu
from tests.bench.queries import QUERIES, Agreement, QueriesResult, QueryRun
from tests.bench.stats import ms, percentile

TARGET_ALERT_P99_S = 1.0
TARGET_ALERT_RATIO = 0.95  # issue 13: ingestion with 1,000 rules >= 0.95x ingestion without
KEEPS_UP_S = 1.0  # the engine "keeps up" when its backlog is gone within this long after the load is queryable

Row = tuple[str, str, str, str]


def verdict(value: float, target: float, *, at_most: bool = False, band: float = 0.10) -> str:
    ok = value <= target if at_most else value >= target
    status = "PASS" if ok else "MISS"
    return f"{status} (borderline)" if abs(value / target - 1) < band else status


def _speedup(rollup: QueryRun | None, raw: QueryRun | None) -> str:
    if rollup is None or raw is None or not rollup.latencies or not raw.latencies:
        return "n/a"
    x = raw.p(50) / rollup.p(50)
    return f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def _p99_agreement(a: Agreement) -> str:
    if a.p99_sources == {"raw"}:
        return "p99 equal (the aligned p99 was answered from raw points too: the range holds few points)"
    return f"p99 within {a.max_rel_p99:.2%} (sketch bound {SKETCH_RELATIVE_ERROR:.2%})"


def _raw_text(raw: QueryRun) -> str:
    text = f"{ms(raw.p(50))} / {ms(raw.p(99))}"
    if raw.errors:
        text += f"; {len(raw.errors)} of {raw.requests} answered 503 (no pooled connection within 2 s)"
    return text


def query_rows(q: QueriesResult | None, cfg: BenchConfig) -> list[Row]:
    if q is None:
        return []
    ds, ld, a = q.dataset, q.load, q.agreement
    rows: list[Row] = [
        (
            f"Query data set: {ds.points:,} points = {ds.devices} devices x {ds.metrics} metrics x {ds.per_series:,} "
            f"(one per {ds.step_min} min over 7 d), loaded over HTTP in {cfg.query_batch}-point batches",
            f"{ld.queryable_rate:,.0f} points/s queryable ({ld.queryable_s:.0f} s); every consumer, rollups "
            f"included, caught up after {ld.caught_up_s:.0f} s ({ld.caught_up_rate:,.0f} points/s)",
            "-",
            "info",
        )
    ]
    for query in QUERIES:
        rollup, raw = q.run(query.key, raw=False), q.run(query.key, raw=True)
        if rollup is None or raw is None:
            continue
        target = query.target_p99_s or math.inf
        rows.append(
            (
                f"{query.title}, hour-aligned range (answered from {rollup.source}), p50 / p99 "
                f"(concurrency {q.concurrency}, {len(rollup.latencies):,} requests)",
                f"{ms(rollup.p(50))} / {ms(rollup.p(99))}",
                f"p99 < {target * 1000:g} ms",
                verdict(rollup.p(99), target, at_most=True),
            )
        )
        rows.append(
            (
                f"  same from raw points (range 30 s off the hour), p50 / p99 ({raw.requests:,} requests)",
                _raw_text(raw),
                "-",
                "info",
            )
        )
        alone_rollup, alone_raw = q.run(query.key, False, alone=True), q.run(query.key, True, alone=True)
        if alone_rollup is not None and alone_raw is not None:
            rows.append(
                (
                    f"  speed-up of the aligned range (p50 raw / p50 aligned), at concurrency {q.concurrency} / "
                    f"one request at a time ({len(alone_rollup.latencies)} each)",
                    f"{_speedup(rollup, raw)} / {_speedup(alone_rollup, alone_raw)} (alone: aligned "
                    f"{ms(alone_rollup.p(50))}, raw {ms(alone_raw.p(50))})"
                    + ("; below 1x the aligned range is slower" if alone_raw.p(50) < alone_rollup.p(50) else ""),
                    "-",
                    "info",
                )
            )
    rows.append(
        (
            "  aligned vs 30 s off answers (checked first, 4 series or metrics per query)",
            f"{a.compared} buckets: avg within {a.max_rel_avg:.0e} relative, counts equal, {_p99_agreement(a)}; "
            f"the week's count {a.points_counted:,} = every point",
            "-",
            "info",
        )
    )
    for e in q.csv:
        rows.append(
            (
                f"CSV export, {e.title} ({e.rows_each:,} rows; {len(e.latencies)} exports, one at a time)",
                f"{e.rows_per_s:,.0f} rows/s ({e.mb_per_s:.1f} MB/s; {ms(percentile(e.latencies, 50))} each)",
                "-",
                "info",
            )
        )
    return rows


def _keeps_up(a: AlertLoadResult) -> tuple[str, str]:
    points = a.pending_at_end * a.points_per_message
    behind = f"{a.pending_at_end:,} messages ({points:,} points) behind when the load was queryable"
    if a.drain_s is not None:
        ok = a.drain_s <= KEEPS_UP_S
        return f"{behind}; drained {a.drain_s:.1f} s later", "PASS" if ok else "MISS"
    est = ""
    if a.in_process_us.get("rules"):
        left = (a.pending_at_end - a.drained_messages) * a.points_per_message
        est = f"; at the engine's in-process cost that is ~{left * a.in_process_us['rules'] / 1e6:,.0f} s of CPU"
    return (
        f"{behind}; not drained after {a.drain_limit_s:g} s ({a.drained_messages} of them done){est}",
        "MISS",
    )


def alert_rows(lag: AlertLagResult | None, load: AlertLoadResult | None, phases: list[PhaseCpu]) -> list[Row]:
    rows: list[Row] = []
    if lag is not None:
        p99 = lag.p("to_visible", 99)
        rows.append(
            (
                f"Ack → alert visible in GET /alerts?rule_id=…, p50 / p99 ({lag.breaches} breaches, one at a time, "
                f"each from a new device, trigger_count 1)",
                f"{ms(lag.p('to_visible', 50))} / {ms(p99)}",
                f"p99 < {TARGET_ALERT_P99_S:g} s",
                verdict(p99, TARGET_ALERT_P99_S, at_most=True),
            )
        )
    if load is None or load.none is None or load.with_rules is None:
        return rows
    n = load.rules
    rows.append(
        (
            f"Ingestion with {n:,} enabled rules / none, queryable ({load.none.points_acked:,} points each)",
            f"{load.with_rules.rate:,.0f} / {load.without_text()} points/s = {load.ratio:.2f}x",
            f">= {TARGET_ALERT_RATIO}x",
            verdict(load.ratio, TARGET_ALERT_RATIO),
        )
    )
    rows.append(
        (
            "  same, accepted by the gateway (HTTP 200 rate)",
            f"{load.with_rules.acked_rate:,.0f} / {load.without_text(acked=True)} points/s = {load.acked_ratio:.2f}x",
            "-",
            "info",
        )
    )
    shares = {p.name: 100 * p.cpu_s.get("alert-worker", 0.0) / p.wall_s for p in phases}
    rows.append(
        (
            "  alert engine CPU during those runs, with rules / none (share of one core)",
            f"{shares.get(f'{n} rules', math.nan):.0f}% / {shares.get('no rules', math.nan):.0f}%; "
            f"{shares.get('alert drain', math.nan):.0f}% while draining",
            "-",
            "info",
        )
    )
    text, status = _keeps_up(load)
    rows.append(
        (f"  alert engine keeps up (consumer {_consumer()})", text, f"backlog gone within {KEEPS_UP_S:g} s", status)
    )
    us, us0 = load.in_process_us.get("rules", math.nan), load.in_process_us.get("none", math.nan)
    rows.append(
        (
            f"  engine work per point in-process (Evaluator.points, {load.rules_per_metric} rules per metric) / none",
            f"{us:,.0f} / {us0:.2f} µs → at most {1e6 / us:,.0f} points/s per core with the rules",
            "-",
            "info",
        )
    )
    rows.append(
        (
            f"  creating the {n:,} rules (POST, {RULE_CONCURRENCY} at a time, each returns once the engine applied it)",
            f"{load.create_s:.1f} s; p50 / p99 {ms(percentile(load.create_latencies, 50))} / "
            f"{ms(percentile(load.create_latencies, 99))} each",
            "-",
            "info",
        )
    )
    return rows


def _consumer() -> str:
    from tests.bench.backlog import alert_consumers

    return ", ".join(s.durable for s in alert_consumers())


def _share(p: PhaseCpu | None, name: str) -> float:
    return math.nan if p is None else 100 * p.cpu_s.get(name, 0.0) / p.wall_s


def query_notes(q: QueriesResult | None) -> list[str]:
    if q is None:
        return []
    notes = []
    for query in QUERIES:
        rollup, raw = q.run(query.key, raw=False), q.run(query.key, raw=True)
        if rollup is None or raw is None or rollup.cpu is None:
            continue
        alone = q.run(query.key, raw=False, alone=True)
        calls = len(rollup.latencies) + rollup.warmups  # the warm-up requests are in the CPU window
        pg, gw = _share(rollup.cpu, "postgres"), _share(rollup.cpu, "gateway")
        pg_ms = 1000 * rollup.cpu.cpu_s.get("postgres", 0.0) / calls
        gw_ms = 1000 * rollup.cpu.cpu_s.get("gateway", 0.0) / calls
        cpu = rollup.cpu
        busy = 100 * cpu.machine_busy_s / cpu.wall_s
        client = _share(cpu, "bench client")
        other = 100 * max(0.0, cpu.machine_busy_s - sum(cpu.cpu_s.values())) / cpu.wall_s
        if pg >= 120:
            limit = "PostgreSQL is the limit (it runs the queries on both cores)"
        elif gw >= 80:
            limit = "the gateway's one event loop is the limit"
        elif busy >= 180:
            limit = (
                "both cores are busy, shared by the gateway, PostgreSQL and the benchmark client, so requests "
                "queue for CPU rather than for one saturated process"
            )
        else:
            limit = "no single process is saturated"
        notes.append(
            f"{query.title}: {rollup.rps:,.0f} requests/s hour-aligned ({rollup.source}) with "
            f"{rollup.concurrency} in flight "
            f"(mean {1000 * rollup.concurrency / rollup.rps:.1f} ms by Little's law; alone, one at a time, "
            f"{ms(alone.p(50)) if alone is not None else 'n/a'}); PostgreSQL {pg:.0f}%, gateway {gw:.0f}% "
            f"({pg_ms:.2f} / {gw_ms:.2f} ms of CPU per request), benchmark client {client:.0f}%, other jobs "
            f"{other:.0f}% of a core; machine {busy:.0f}% busy: {limit}. Shifted 30 s (raw points): "
            f"{raw.rps:,.0f} requests/s, PostgreSQL {_share(raw.cpu, 'postgres'):.0f}%."
            + (
                f" {len(raw.errors)} of the {raw.requests} raw requests were answered 503 after waiting "
                f"{percentile(raw.errors, 50):.1f} s (median): the gateway's connection pool was taken by slower "
                "queries and a request gives up after TELEMETRY_DB_TIMEOUT."
                if raw.errors
                else ""
            )
        )
    for e in q.csv:
        notes.append(
            f"CSV {e.title}: {e.rows_per_s:,.0f} rows/s, {e.mb_per_s:.1f} MB/s over {len(e.latencies)} sequential "
            "exports (body read to its end)."
        )
    return notes


def alert_notes(load: AlertLoadResult | None, phases: list[PhaseCpu]) -> list[str]:
    if load is None or load.none is None or load.with_rules is None:
        return []
    us = load.in_process_us.get("rules", math.nan)
    need = load.none.rate * us / 1e6
    with_p = next((p for p in phases if p.name == f"{load.rules} rules"), None)
    none_p = next((p for p in phases if p.name == "no rules"), None)
    parts = []
    for name in ("gateway", "ingest-worker", "postgres", "alert-worker"):
        parts.append(f"{name} {_share(none_p, name):.0f}% → {_share(with_p, name):.0f}%")
    return [
        f"Alert rules: each point is evaluated against every enabled rule of its metric ({load.rules_per_metric} "
        f"here), {us:,.0f} µs per point in the engine's one process, so it can follow at most "
        f"{1e6 / us:,.0f} points/s; the load arrived at {load.none.rate:,.0f} points/s, which would need "
        f"{need:,.0f} cores. Without rules the engine only decodes the points "
        f"({load.in_process_us.get('none', math.nan):.2f} µs each).",
        "Ingestion without → with the rules (CPU, % of one core): "
        + ", ".join(parts)
        + ". The engine's consumer is separate from ingestion's, so storage does not wait for it; it only takes CPU "
        "from the other stages on the shared cores.",
    ]


def method_text(c: BenchConfig, q: QueriesResult | None) -> str:
    per_series = (7 * 1440 - 2) // c.query_step_min + 1
    size = (
        f"{q.dataset.points:,} points ({q.dataset.devices} devices)"
        if q is not None
        else f"about {c.query_points:,} points"
    )
    return f"""9. **Queries** (`BENCH_QUERY_POINTS`={c.query_points:,}, 0 skips it). After phase 8, with the stack's
   ingest worker restarted with default settings. The gateways of this run have the query cache off
   (`TELEMETRY_QUERY_CACHE_SIZE=0`): these figures are the database's; the cache (on by default) is measured in
   docs/benchmarks-fast-reads.md and in the side-by-side table. The data set: {size}, i.e. devices x {c.query_metrics} metrics
   (`bq0000`…, `bench-q-m00`…), one point every {c.query_step_min} min over the 7 days before the current hour
   ({per_series:,} per series), always on a whole minute and never in the week's first or last minute, float
   values in [-50, 150]. The spec's size is 10 M points (1,000 devices x 10 metrics):
   `BENCH_QUERY_POINTS=10000000` gives 992 devices (about 10 M points; loading alone then takes 10-15 min here).
   Loaded through the real path, `POST …/telemetry/batch` in {c.query_batch}-point batches (10 time steps x the
   device's metrics) from {c.concurrency} connections; the load's clock stops when every durable consumer,
   `projection_rollups` included, has nothing pending or unacknowledged, and `rollup_minute` and `rollup_hour`
   must then each count every point. Why {c.query_batch}-point batches: in this sparse data every point is its own
   (device, metric, minute) bucket, and in trial runs with 1000-point batches one rollup refresh of a
   1024-notice projection batch (about 1 M buckets) exceeded the projection's 30 s statement timeout; the
   retried notices were then skipped by the projection's checkpoint and the rollups lacked about 9% of the
   points.
   Each query kind then runs {c.query_requests} times from {c.query_concurrency} closed-loop clients, once
   hour-aligned (answered from `rollup_hour`, except that the product answers a percentile over at most
   `TELEMETRY_EXACT_PERCENTILE_POINTS` points exactly from raw points; the `source` seen is reported) and once
   with start and end 30 s earlier (always answered from raw points, `source: raw`); 2 warm-up requests per client first; requests built before the clock, cycling over devices
   and metrics; every answer's `source` checked; a 503 is counted, not timed. No request starts more than
   {c.query_max_s:g} s into a run (`BENCH_QUERY_MAX_S`: a slow run has fewer requests) and a fast run goes on
   cycling over its requests for at least {c.query_min_s:g} s (`BENCH_QUERY_MIN_S`: so that its CPU window means
   something). Before each pair, both run one request at a time ({c.query_alone_requests} requests each): the
   unloaded latency, and the speed-up without queueing. Because points sit on whole minutes, a bucket
   [h - 30 s, h + 3570 s) holds exactly the points of [h, h + 1 h), so both answers must agree: before timing,
   4 series (or metrics) per query are compared bucket by bucket (avg to 1e-9 relative, counts exactly, p99
   within the sketch's {SKETCH_RELATIVE_ERROR:.2%} when from a sketch, exactly when both are raw). The queries:
   (1) `POST /api/v1/telemetry/query`, one device and metric, `avg`, interval 3600, the last 24 h;
   (2) `GET /api/v1/telemetry/aggregated`, one metric, `avg`, interval 3600, the whole week, all devices;
   (3) `POST /api/v1/telemetry/query`, one device and metric, `p99`, interval = 30 d = the range (one bucket);
   (4) `GET /api/v1/telemetry/export/csv`, {c.csv_repeats} exports one after the other (after one warm-up) of one
   device's {c.query_metrics} metrics over the week, then of one metric of every device over the last 24 h; the
   chunked body is read to its end and its rows counted.
10. **Alerts** (`BENCH_ALERT_BREACHES`={c.alert_breaches}, `BENCH_ALERT_POINTS`={c.alert_points:,}; 0 skips). One
   rule (`> 1000`, trigger_count 1) on a metric of its own; {c.alert_breaches} breaching single points, one at
   a time (20 ms apart, after 3 warm-up breaches), each from a new device; from each HTTP 200,
   `GET /api/v1/telemetry/alerts?rule_id=…&device_id=…` is polled (sleeping {c.alert_poll_ms:g} ms between polls)
   until the alert is listed. The rule is then disabled. Then the sustained run (phase 2's method) with
   {c.alert_points:,} points and no enabled rule; then {c.alert_rules:,} rules are created ({RULE_CONCURRENCY} POSTs at a
   time, `>` a threshold above any value sent, cycling over the load's 5 metric names, all devices) and the
   sustained run is repeated with them. The alert engine's consumer backlog is read when that load is
   queryable, and its drain timed (up to {c.alert_drain_max_s:g} s, `BENCH_ALERT_DRAIN_MAX_S`); this is the last phase.
   For a noise-free number the engine's per-point work (`Evaluator.points` with the product's `RuleIndex`,
   fed from the EVENTS stream) is timed in the benchmark process alone, with the rules and without.
"""
