"""The alert engine as a runtime handler: a failed save is retried without evaluating the points twice."""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
import structlog
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from alert_worker import engine as engine_module
from alert_worker.emitter import Emitter
from alert_worker.engine import Engine
from alert_worker.evaluator import Evaluator
from alert_worker.rules import RuleIndex
from telemetry_core.embedded import free_port
from telemetry_core.errors import is_transient
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import SIGNATURE
from telemetry_core.metrics import ALERT_UNWATCHED
from telemetry_core.pg_pool import make_pool
from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import EVENTS_STREAM, POINTS_STREAM, ConsumerSpec, alert_subject, points_subject, slot_of
from telemetry_schemas.codecs import alert_event_decoder
from telemetry_schemas.events import AlertRuleCreated, AlertTriggered
from telemetry_schemas.rules import RuleSpec
from tests.support.ids import unique
from tests.support.stack import SIGNING_KEY

LOG = structlog.get_logger().bind(test="engine")


async def test_a_failed_save_is_retried_with_the_same_transitions_and_no_second_evaluation(
    nc: Client, pool: AsyncConnectionPool
) -> None:
    js, device, metric, rule_id = nc.jetstream(), unique("dev"), unique("m"), str(uuid.uuid4())
    rules = RuleIndex(js, LOG)  # not following: the rule is applied by hand
    spec = msgspec.convert(
        {"name": "hot", "metric_name": metric, "condition": ">", "threshold_value": 90, "device_ids": [device]},
        RuleSpec,
    )
    rules._apply(AlertRuleCreated(rule_id=rule_id, rule=spec, at=datetime.now(UTC), by="test"), 1)
    evaluator = Evaluator(rules, {}, 60.0, LOG)
    body = {"device_id": device, "points": [{"timestamp": datetime.now(UTC).isoformat(), "metric_name": metric,
                                              "value": 95}]}  # fmt: skip
    validator = PointsValidator(SIGNING_KEY.encode())
    data = json.dumps(body).encode()  # signed, as the gateway publishes: only admitted points are evaluated
    seq = (await js.publish(points_subject(device), data, headers={SIGNATURE: validator.signature(data)})).seq
    stored_as = f"telemetry.points.{slot_of(device)}.{device}"
    sub = await js.pull_subscribe(stored_as, stream=POINTS_STREAM)
    msgs = await sub.fetch(1, timeout=5)
    name = unique("engine_test")
    dead = make_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/telemetry", timeout_s=0.3)
    await dead.open(wait=False)
    engine = Engine(js, dead, ConsumerSpec(POINTS_STREAM, name, "telemetry.points.>"), evaluator,
                    Emitter(js, EventsOut(nc, "test"), LOG), partition=0, partitions=1, checkpoint=0, tick_s=1.0,
                    rules_seq=lambda: 1, log=LOG, validator=validator)  # fmt: skip
    try:
        with pytest.raises(Exception) as failed:
            await engine.handle(msgs)
        assert is_transient(failed.value), failed.value  # so the runtime retries the batch in place
        (machine,) = evaluator.machines.values()
        assert machine.alert_id is not None and engine.checkpoint == seq
        # PostgreSQL is back; the runtime calls the handler again with the same batch.
        engine.pool = pool
        assert await engine.handle(msgs) == []
        assert engine.points_evaluated == 1  # the retry saved what was evaluated; it did not evaluate again
        assert engine.points_unwatched == 0  # its rule watches the metric: read and evaluated
        event = alert_event_decoder.decode((await js.get_last_msg(EVENTS_STREAM, alert_subject(machine.alert_id))).data)
        assert isinstance(event, AlertTriggered) and (event.rule_id, event.current_value) == (rule_id, 95)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT rule_id, device_id FROM telemetry.alert_machines WHERE partition = %s",
                                     (name,))  # fmt: skip
            assert await cur.fetchall() == [(rule_id, device)]
            cur = await conn.execute("SELECT last_seq FROM telemetry.projection_checkpoints WHERE projection = %s",
                                     (name,))  # fmt: skip
            assert await cur.fetchall() == [(seq,)]
    finally:
        await sub.unsubscribe()
        await dead.close(timeout=1)


async def test_a_batch_that_changes_nothing_saves_its_position_later_not_at_once(
    nc: Client, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "CHECKPOINT_EVERY_S", 0.5)
    js, device = nc.jetstream(), unique("dev")
    validator = PointsValidator(SIGNING_KEY.encode())
    # A point of a metric no rule watches: evaluated (skimmed), no machine changes, nothing to emit.
    body = {"device_id": device, "points": [{"timestamp": datetime.now(UTC).isoformat(), "metric_name": "quiet",
                                              "value": 1}]}  # fmt: skip
    data = json.dumps(body).encode()
    seq = (await js.publish(points_subject(device), data, headers={SIGNATURE: validator.signature(data)})).seq
    sub = await js.pull_subscribe(f"telemetry.points.{slot_of(device)}.{device}", stream=POINTS_STREAM)
    msgs = await sub.fetch(1, timeout=5)
    name = unique("engine_quiet")
    # PostgreSQL unreachable: a commit would raise.
    dead = make_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/telemetry", timeout_s=0.3)
    await dead.open(wait=False)
    evaluator = Evaluator(RuleIndex(js, LOG), {}, 60.0, LOG)
    engine = Engine(js, dead, ConsumerSpec(POINTS_STREAM, name, "telemetry.points.>"), evaluator,
                    Emitter(js, EventsOut(nc, "test"), LOG), partition=0, partitions=1, checkpoint=0, tick_s=1.0,
                    rules_seq=lambda: 1, log=LOG, validator=validator)  # fmt: skip

    async def saved() -> list[tuple[int]]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT last_seq FROM telemetry.projection_checkpoints WHERE projection = %s",
                                     (name,))  # fmt: skip
            return list(await cur.fetchall())

    unwatched = ALERT_UNWATCHED._value.get()
    try:
        assert await engine.handle(msgs) == []  # no commit: it would have failed on the dead pool
        assert engine.checkpoint == seq and await saved() == []
        assert (engine.points_evaluated, engine.points_unwatched) == (1, 1)
        assert ALERT_UNWATCHED._value.get() - unwatched == 1  # on /metrics: telemetry_alert_points_unwatched_total
        engine.pool = pool
        # The tick hook (every 0.2 s in the runtime) saves the position once CHECKPOINT_EVERY_S has passed.
        deadline = time.monotonic() + 5
        while await saved() != [(seq,)]:
            assert time.monotonic() < deadline, "the position was never saved"
            await engine.tick()
            await asyncio.sleep(0.05)
    finally:
        await sub.unsubscribe()
        await dead.close(timeout=1)
        # The tick's heartbeat registered a live engine that never applies a rule: the suite's gateways, on this
        # database, would hold every rule write for 5 s while its row is recent (test_alert_rules_api's "< 4 s").
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM telemetry.alert_engines WHERE partition = %s", (name,))
