"""Alerting: acknowledgement → alert visible latency, and ingestion with many enabled rules vs none.

Latency: one rule (``>`` a threshold, trigger_count 1) on a metric of its own; one breaching point at a
time, each from a new device (so each opens exactly one alert), POSTed as a single point; from its HTTP
200, ``GET /api/v1/telemetry/alerts?rule_id=…&device_id=…`` is polled until the alert is listed.

Throughput: the rules (``>`` a threshold above any value sent, so none ever fires) are spread over the
metric names the sustained load uses; every point of the load is therefore evaluated against
rules / metrics of them. The alert engine reads POINTS through its own consumer, so it can fall behind
without holding back storage; whether it keeps up is read from that consumer's counters.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import msgspec
import structlog
from nats.js import JetStreamContext

from alert_worker.evaluator import Evaluator
from alert_worker.rules import RuleIndex
from telemetry_schemas.values import Point
from tests.bench.client import Poster
from tests.bench.data import VALUE_MAX, PointMaker, hour_ago, point_body, rfc3339
from tests.bench.e2e import SustainedResult
from tests.bench.latency import single_path
from tests.bench.stats import percentile

RULES_PATH = "/api/v1/telemetry/alerts/rules"
ALERTS_PATH = "/api/v1/telemetry/alerts"
LAG_METRIC = "bench-alert-lag"
LAG_THRESHOLD = 1000.0
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


# Rule writes wait until the rules read model and every live alert engine applied them (the engines reply
# over NATS, typically within milliseconds): many at a time all the same, so 1000 rules take seconds.
RULE_CONCURRENCY = 32


async def create_rules(
    client: Poster, specs: Sequence[dict[str, Any]], concurrency: int = RULE_CONCURRENCY
) -> tuple[list[str], float, list[float]]:
    """POST every rule (201 expected); return their ids, the seconds it took, and each POST's latency.

    Each POST returns once the rule is readable and applied by every live alert engine.
    """
    ids: list[str] = [""] * len(specs)
    latencies: list[float] = []
    todo = iter(enumerate(specs))

    async def worker() -> None:
        for i, spec in todo:
            t = time.perf_counter()
            status, data = await client.post(RULES_PATH, _encoder.encode(spec))
            latencies.append(time.perf_counter() - t)
            if status != 201:
                raise RuntimeError(f"creating rule {spec['name']}: HTTP {status}: {data[:300]!r}")
            ids[i] = _decoder.decode(data)["rule_id"]

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids, time.perf_counter() - t0, latencies


def quiet_rules(n: int, metrics: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` enabled rules cycling over ``metrics``, each with a threshold no point reaches."""
    rules = []
    for i in range(n):
        rules.append(
            {"name": f"bench-rule-{i:04d}", "metric_name": metrics[i % len(metrics)], "condition": ">",
             "threshold_value": VALUE_MAX + 1000.0 + i, "level": "info"}
        )  # fmt: skip
    return rules


async def set_all_enabled(client: Poster, rule_ids: Sequence[str], enabled: bool) -> None:
    """PUT …/enable for every rule, RULE_CONCURRENCY at a time (each returns once every engine applied it)."""
    todo = iter(rule_ids)

    async def worker() -> None:
        for rule_id in todo:
            await set_enabled(client, rule_id, enabled)

    await asyncio.gather(*(worker() for _ in range(RULE_CONCURRENCY)))


async def set_enabled(client: Poster, rule_id: str, enabled: bool) -> None:
    body = _encoder.encode({"enabled": enabled})
    status, data = await client.put(f"{RULES_PATH}/{rule_id}/enable", body)
    if status != 200:
        raise RuntimeError(f"enable {rule_id}={enabled}: HTTP {status}: {data[:300]!r}")


@dataclass
class AlertLagResult:
    breaches: int
    poll_s: float  # sleep between two polls
    create_s: float  # POST of the rule (returns once every engine applied it)
    rule_id: str
    ack_latency: list[float] = field(default_factory=list)  # POST of the breaching point → 200
    to_visible: list[float] = field(default_factory=list)  # 200 → alert listed by GET /alerts
    polls: int = 0
    poll_wall_s: float = 0.0

    def p(self, which: str, q: float) -> float:
        return percentile(getattr(self, which), q)

    @property
    def poll_cycle_s(self) -> float:
        """Mean time from one poll's start to the next (request + sleep)."""
        return self.poll_wall_s / max(self.polls, 1)


async def run_alert_lag(client: Poster, *, breaches: int, poll_ms: float, gap_ms: float = 20.0) -> AlertLagResult:
    """One breach at a time, each from a new device; poll GET /alerts until the alert shows."""
    spec = {"name": "bench-alert-lag", "metric_name": LAG_METRIC, "condition": ">", "threshold_value": LAG_THRESHOLD,
            "trigger_count": 1, "level": "critical"}  # fmt: skip
    t0 = time.perf_counter()
    (rule_id,), _, _ = await create_rules(client, [spec], 1)
    result = AlertLagResult(breaches, poll_ms / 1000, time.perf_counter() - t0, rule_id)
    for i in range(breaches + 3):  # the first 3 warm up (connections, the engine's first fetch)
        device_id = f"bench-alert-{i:04d}"
        body = point_body(
            {"timestamp": rfc3339(datetime.now(UTC)), "metric_name": LAG_METRIC, "value": LAG_THRESHOLD + 1 + i}
        )
        query = f"{ALERTS_PATH}?{urlencode({'rule_id': rule_id, 'device_id': device_id})}"
        sent = time.perf_counter()
        status, data = await client.post(single_path(device_id), body)
        acked = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"breach for {device_id}: HTTP {status}: {data[:300]!r}")
        deadline = acked + 10.0
        while True:
            p0 = time.perf_counter()
            status, data = await client.get(query)
            seen = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"GET alerts: HTTP {status}: {data[:300]!r}")
            alerts = _decoder.decode(data)["alerts"]
            if alerts:
                a = alerts[0]
                if a["device_id"] != device_id or a["status"] != "active" or a["rule_id"] != rule_id:
                    raise RuntimeError(f"unexpected alert for {device_id}: {a}")
                break
            if seen > deadline:
                raise TimeoutError(f"no alert for {device_id} within 10 s of its acknowledgement")
            await asyncio.sleep(result.poll_s)
            if i >= 3:
                result.polls += 1
                result.poll_wall_s += time.perf_counter() - p0
        if i >= 3:
            result.ack_latency.append(acked - sent)
            result.to_visible.append(seen - acked)
        await asyncio.sleep(gap_ms / 1000)
    return result


@dataclass
class AlertLoadResult:
    """Ingestion without / with the rules, and how the alert engine coped."""

    rules: int
    rules_per_metric: int
    create_s: float  # creating the rules (POST, each returns once applied by every engine)
    create_latencies: list[float] = field(default_factory=list)
    none: SustainedResult | None = None
    with_rules: SustainedResult | None = None
    # The same load without rules again after the rules were disabled: the baseline is the mean of the runs
    # before and after, so the machine's drift over the run (tables grow, autovacuum) does not count as rule cost.
    none_after: SustainedResult | None = None
    pending_at_end: int = 0  # alert consumer: messages pending + unacked when the load was queryable
    pending_max: int = 0  # largest alert consumer backlog seen while sending
    drain_s: float | None = None  # from queryable until the alert consumer had nothing pending (None: gave up)
    drain_limit_s: float = 0.0
    drained_messages: int = 0  # messages the engine acknowledged in the drain window
    points_per_message: int = 0
    in_process_us: dict[str, float] = field(default_factory=dict)  # "none" / "rules" → µs of engine CPU per point

    def _without(self, acked: bool) -> float:
        """Ingestion without rules: the mean of the runs before and after the one with rules (where both ran)."""
        runs = [r for r in (self.none, self.none_after) if r is not None]
        return sum(r.acked_rate if acked else r.rate for r in runs) / len(runs)

    @property
    def ratio(self) -> float:
        assert self.none is not None and self.with_rules is not None
        return self.with_rules.rate / self._without(acked=False)

    @property
    def acked_ratio(self) -> float:
        assert self.none is not None and self.with_rules is not None
        return self.with_rules.acked_rate / self._without(acked=True)

    def without_text(self, acked: bool = False) -> str:
        """The baseline as the report shows it: one run, or before and after."""
        assert self.none is not None
        first = self.none.acked_rate if acked else self.none.rate
        if self.none_after is None:
            return f"{first:,.0f}"
        second = self.none_after.acked_rate if acked else self.none_after.rate
        return f"mean({first:,.0f} before, {second:,.0f} after)"


async def evaluation_cost(
    js: JetStreamContext, n_rules: int, metrics: Sequence[str], devices: int, timeout_s: float = 30.0
) -> float:
    """The engine's per-point work (Evaluator.points with the product's RuleIndex, fed from the EVENTS stream).

    Measured in this process, alone (no contention), on 1000 points for each of ``devices`` fresh devices,
    once ``n_rules`` enabled rules on ``metrics`` have arrived: CPU µs per point.
    """
    log = structlog.get_logger()
    rules = RuleIndex(js, log)
    rules.reach(1 << 62)  # past every POINTS message: each change applies as it arrives
    await rules.follower.start()
    try:
        deadline = time.perf_counter() + timeout_s
        while sum(r.enabled and r.spec.metric_name in metrics for r in rules.rules.values()) < n_rules:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {len(rules.rules)} rules arrived from the stream")
            await asyncio.sleep(0.05)
    finally:
        await rules.follower.stop()
    maker = PointMaker(hour_ago(), 1000, seed=3, metrics=metrics)
    points = msgspec.json.decode(msgspec.json.encode(maker.points(1000)), type=list[Point])
    evaluator = Evaluator(rules, {}, 300.0, log)
    now = time.time()
    t0 = time.process_time()
    for d in range(devices):
        evaluator.points(f"bench-eval-{d}", ((f"{d}:{i}", p) for i, p in enumerate(points)), now)
    return 1e6 * (time.process_time() - t0) / (devices * len(points))
