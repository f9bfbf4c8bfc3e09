"""Rule changes and an engine that is behind: each change governs the points after its ``points_seq``.

Real NATS (POINTS, a durable consumer of the test's devices) and PostgreSQL; the rule events are handed to the
engine's RuleBook as its follower would hand them (``receive``), all before the engine evaluates anything: an engine
behind its stream. alert_worker/rules.py says why; tests/e2e/test_alert_rule_changes.py does it with processes.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from psycopg_pool import AsyncConnectionPool

from alert_worker.emitter import Emitter
from alert_worker.engine import Engine
from alert_worker.evaluator import Evaluator
from alert_worker.rules import RuleIndex
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import SIGNATURE
from telemetry_core.metrics import ALERT_RULES_WAITING
from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import POINTS_STREAM, ConsumerSpec, points_subject, slot_of
from telemetry_schemas.events import AlertRuleCreated, AlertRuleEnabled
from telemetry_schemas.rules import RuleSpec
from tests.support.ids import unique
from tests.support.stack import SIGNING_KEY

LOG = structlog.get_logger().bind(test="rule_changes_behind")
VALIDATOR = PointsValidator(SIGNING_KEY.encode())
AT = datetime.now(UTC)


async def publish(js: JetStreamContext, device: str, metric: str, value: float) -> int:
    """One signed point, as the gateway publishes it; its POINTS sequence."""
    body = {"device_id": device, "points": [{"timestamp": datetime.now(UTC).isoformat(), "metric_name": metric,
                                              "value": value}]}  # fmt: skip
    data = json.dumps(body).encode()
    return int((await js.publish(points_subject(device), data, headers={SIGNATURE: VALIDATOR.signature(data)})).seq)


async def consumer_of(js: JetStreamContext, devices: list[str]) -> tuple[str, Any]:
    """A durable consumer of these devices' points (the engine's own stands in for it), and a pull subscription."""
    name = unique("rules_behind")
    filters = [f"telemetry.points.{slot_of(d)}.{d}" for d in devices]
    await js.add_consumer(POINTS_STREAM, ConsumerConfig(durable_name=name, filter_subjects=filters,
                                                        ack_policy=AckPolicy.EXPLICIT))  # fmt: skip
    return name, await js.pull_subscribe_bind(name, POINTS_STREAM)


def engine_of(nc: Client, pool: AsyncConnectionPool, name: str, rules: RuleIndex) -> Engine:
    js = nc.jetstream()
    return Engine(js, pool, ConsumerSpec(POINTS_STREAM, name, ""), Evaluator(rules, {}, 600.0, LOG),
                  Emitter(js, EventsOut(nc, "test"), LOG), partition=0, partitions=1, checkpoint=0, tick_s=1.0,
                  rules_seq=lambda: 0, log=LOG, validator=VALIDATOR)  # fmt: skip


@asynccontextmanager
async def engine_on(
    nc: Client, pool: AsyncConnectionPool, devices: list[str]
) -> AsyncIterator[tuple[Engine, RuleIndex, Any]]:
    """An engine (on a consumer of ``devices``' points) starting at POINTS' end, its rule book, its subscription.

    The consumer is deleted on the way out.
    """
    js = nc.jetstream()
    name, sub = await consumer_of(js, devices)
    rules = RuleIndex(js, LOG)  # not following: the tests hand the events over, as the follower would
    rules.reach(await position(js))  # where this engine starts
    try:
        yield engine_of(nc, pool, name, rules), rules, sub
    finally:
        await js.delete_consumer(POINTS_STREAM, name)


def spec(metric: str) -> RuleSpec:
    return msgspec.convert({"name": "hot", "metric_name": metric, "condition": ">", "threshold_value": 90}, RuleSpec)


async def position(js: JetStreamContext) -> int:
    return int((await js.stream_info(POINTS_STREAM)).state.last_seq or 0)


async def fetch(sub: Any, n: int) -> list[Msg]:
    msgs: list[Msg] = []
    while len(msgs) < n:
        msgs += await sub.fetch(n - len(msgs), timeout=5)
    return msgs


async def test_points_accepted_while_a_rule_was_disabled_stay_unevaluated_when_it_is_enabled_before_the_engine_gets_there(
    nc: Client, pool: AsyncConnectionPool
) -> None:
    js, metric, rule_id = nc.jetstream(), unique("m"), unique("rule")
    a, b, c = unique("a"), unique("b"), unique("c")
    async with engine_on(nc, pool, [a, b, c]) as (engine, rules, sub):
        rules.receive(AlertRuleCreated(rule_id=rule_id, rule=spec(metric), at=AT, by="op",
                                       points_seq=await position(js)), 1)  # fmt: skip
        seq_a = await publish(js, a, metric, 95)  # accepted while the rule is enabled
        rules.receive(AlertRuleEnabled(rule_id=rule_id, enabled=False, at=AT, by="op", points_seq=seq_a), 2)
        seq_b = await publish(js, b, metric, 96)  # accepted while it is disabled
        rules.receive(AlertRuleEnabled(rule_id=rule_id, enabled=True, at=AT, by="op", points_seq=seq_b), 3)
        await publish(js, c, metric, 97)  # accepted once it is enabled again
        # Every change arrived before the engine evaluated one point: the last one says enabled.
        assert rules.rules[rule_id].enabled and len(rules.waiting) == 2
        msgs = await fetch(sub, 3)
        assert await engine.handle(msgs) == []
        alerted = {device for (_rule, device), m in engine.evaluator.machines.items() if m.alert_id is not None}
        assert alerted == {a, c}  # b's breach came while the rule was disabled
        assert rules.rules[rule_id].enabled and not rules.waiting
        assert rules.position == msgs[-1].metadata.sequence.stream


async def test_an_idle_engine_applies_a_waiting_change_once_its_consumer_has_nothing_unevaluated(
    nc: Client, pool: AsyncConnectionPool
) -> None:
    js, metric, rule_id = nc.jetstream(), unique("m"), unique("rule")
    ours, elsewhere = unique("ours"), unique("elsewhere")
    async with engine_on(nc, pool, [ours]) as (engine, rules, sub):
        await publish(js, ours, metric, 1)
        # The change is made after a point of another partition: no message of ours will ever reach its points_seq.
        made_at = await publish(js, elsewhere, metric, 1)
        rules.receive(AlertRuleCreated(rule_id=rule_id, rule=spec(metric), at=AT, by="op", points_seq=made_at), 1)
        await engine.apply_rules_when_idle()
        assert rule_id not in rules.rules  # our point is pending: it is evaluated without the rule first
        (msg,) = await fetch(sub, 1)
        await engine.handle([msg])
        await engine.apply_rules_when_idle()
        assert rule_id not in rules.rules  # evaluated but not acknowledged: the consumer cannot tell yet
        assert ALERT_RULES_WAITING._value.get() == 1  # on /metrics: telemetry_alert_rule_changes_waiting
        await msg.ack_sync()
        # The runtime's tick asks (Engine.tick; not called here: its heartbeat would register a live engine that
        # the suite's gateways then wait for).
        await engine.apply_rules_when_idle()
        assert rule_id in rules.rules and rules.position == made_at and not rules.waiting
        assert ALERT_RULES_WAITING._value.get() == 0


async def test_a_busy_engine_applies_a_change_made_on_a_stream_since_created_again(
    nc: Client, pool: AsyncConnectionPool
) -> None:
    js, metric, rule_id = nc.jetstream(), unique("m"), unique("rule")
    ours = unique("ours")
    async with engine_on(nc, pool, [ours]) as (engine, rules, _sub):
        await publish(js, ours, metric, 1)  # pending: the consumer is busy, the idle rule does not apply
        beyond = await position(js) + 1_000_000  # a sequence of the stream before it was deleted and made again
        rules.receive(AlertRuleCreated(rule_id=rule_id, rule=spec(metric), at=AT, by="op", points_seq=beyond), 1)
        await engine.apply_rules_when_idle()
        assert rule_id in rules.rules and not rules.waiting
        assert rules.position < beyond  # the position is still this stream's
