"""Platform events in (FR-020): device.deleted and user.deleted, each applied once when delivered twice."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import httpx
import msgspec
import nats
import psycopg
import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from telemetry_core.topology import (
    EVENTS_STREAM,
    PLATFORM_CONSUMER,
    PLATFORM_STREAM,
    SUBSCRIPTIONS_BUCKET,
    alert_subject,
    rule_subject,
)
from telemetry_schemas.codecs import alert_event_decoder, json_encoder, rule_event_decoder
from telemetry_schemas.enums import AlertLevel
from telemetry_schemas.events import (
    AlertAcknowledged,
    AlertResolved,
    AlertRuleCreated,
    AlertRuleEnabled,
    AlertRuleUpdated,
    AlertTriggered,
)
from telemetry_schemas.rules import RuleSpec
from tests.e2e.conftest import stored_rows
from tests.e2e.test_alert_engine import ALERTS, RULES, alerts_of, make_rule, send
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
DEVICE_DELETED = "device_service.device.deleted"
USER_DELETED = "account_service.user.deleted"
T = TypeVar("T")


def with_js(stack: Stack, action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    async def go() -> T:
        nc = await nats.connect(stack.servers.nats_url)
        try:
            return await action(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


async def events_on(js: JetStreamContext, subject: str) -> list[bytes]:
    found, seq = [], 1
    while True:
        try:
            raw = await js.get_msg(EVENTS_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        assert raw.seq is not None
        found.append(raw.data or b"")
        seq = raw.seq + 1


def deliver_twice(stack: Stack, subject: str, payload: dict[str, str]) -> None:
    """Publish the event twice (as a redelivering platform would), then wait until the consumer settled both."""

    async def go(js: JetStreamContext) -> None:
        for _ in range(2):
            await js.publish(subject, msgspec.json.encode(payload))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            info = await js.consumer_info(PLATFORM_STREAM, PLATFORM_CONSUMER)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            assert loop.time() < deadline, f"platform events not consumed: {info}"
            await asyncio.sleep(0.1)

    with_js(stack, go)


def test_device_deleted_resolves_untargets_cancels_and_keeps_data(client: httpx.Client, stack: Stack) -> None:
    device, other, metric = unique("dev"), unique("dev"), unique("cpu")
    shared_rule = make_rule(client, metric, device_ids=[device, other])
    own_rule = make_rule(client, metric, name=f"only {device}", device_ids=[device])
    send(client, device, metric, [95])
    alerts = eventually(lambda: alerts_of(client, shared_rule["rule_id"]) and alerts_of(client, own_rule["rule_id"]),
                        timeout=20, what="alerts")  # fmt: skip
    (alert,) = alerts_of(client, shared_rule["rule_id"])
    assert alerts and alert["status"] == "active"
    sub_only = client.post("/api/v1/telemetry/subscribe", json={"device_ids": [device]}).json()["subscription_id"]
    sub_both = client.post("/api/v1/telemetry/subscribe", json={"device_ids": [device, other]}).json()[
        "subscription_id"
    ]

    deliver_twice(stack, DEVICE_DELETED, {"device_id": device, "deleted_at": "2026-01-01T00:00:00Z"})

    for rule in (shared_rule, own_rule):
        (closed,) = eventually(lambda r=rule: alerts_of(client, r["rule_id"], status="resolved"), timeout=15)
        assert (closed["resolved_by"], closed["resolution_note"]) == ("system", "device deleted")

    def rule_states() -> list[tuple[list[str], bool]]:
        # The rule events and the alert events reach their read models independently: poll both rules.
        now = [client.get(f"{RULES}/{r['rule_id']}").json() for r in (shared_rule, own_rule)]
        return [(r["device_ids"], r["enabled"]) for r in now]

    expected = [([other], True), ([device], False)]  # the own rule keeps [device]: [] would mean every device
    eventually(lambda: rule_states() == expected, timeout=15, what=f"rules untargeted / disabled: {expected}")

    async def check_streams(js: JetStreamContext) -> None:
        history = [alert_event_decoder.decode(e) for e in await events_on(js, alert_subject(alert["alert_id"]))]
        assert [type(e) for e in history] == [AlertTriggered, AlertResolved]  # one resolution, not two
        shared = [rule_event_decoder.decode(e) for e in await events_on(js, rule_subject(shared_rule["rule_id"]))]
        assert [type(e) for e in shared] == [AlertRuleCreated, AlertRuleUpdated]
        own = [rule_event_decoder.decode(e) for e in await events_on(js, rule_subject(own_rule["rule_id"]))]
        assert [type(e) for e in own] == [AlertRuleCreated, AlertRuleEnabled]
        kv = await js.key_value(SUBSCRIPTIONS_BUCKET)
        with pytest.raises(KeyNotFoundError):
            await kv.get(sub_only)
        assert (await kv.get(sub_both)).value

    with_js(stack, check_streams)
    assert len(stored_rows(stack.servers, device)) == 1  # its data is kept for history
    assert client.get(f"{ALERTS}/{alert['alert_id']}").json()["status"] == "resolved"


def test_user_deleted_anonymises_the_read_models_once(client: httpx.Client, stack: Stack) -> None:
    user, rule_id, alert_id, device = unique("user"), unique("rule"), unique("alert"), unique("dev")
    now = datetime.now(UTC)
    spec = RuleSpec(name="by a person", metric_name=unique("m"), condition=">", threshold_value=1)  # type: ignore[arg-type]

    async def publish_history(js: JetStreamContext) -> None:
        # As the gateway's commands would have written them on behalf of ``user``.
        async def append(subject: str, event: msgspec.Struct) -> None:
            await js.publish(subject, json_encoder.encode(event))

        await append(rule_subject(rule_id), AlertRuleCreated(rule_id=rule_id, rule=spec, at=now, by=user))
        await append(alert_subject(alert_id), AlertTriggered(
            alert_id=alert_id, rule_id=rule_id, rule_name="by a person", device_id=device, metric_name=spec.metric_name,
            level=AlertLevel.WARNING, message="m", current_value=2, threshold_value=1, kind="threshold",
            triggered_at=now, auto_resolve_at=None, notification_channels=[]))  # fmt: skip
        await append(alert_subject(alert_id), AlertAcknowledged(alert_id=alert_id, at=now, by=user, note=None))
        await append(alert_subject(alert_id), AlertResolved(alert_id=alert_id, rule_id=rule_id, device_id=device,
                                                            at=now, by=user, note=None))  # fmt: skip

    with_js(stack, publish_history)
    eventually(lambda: client.get(f"{ALERTS}/{alert_id}").json().get("resolved_by") == user, timeout=15)
    eventually(lambda: client.get(f"{RULES}/{rule_id}").status_code == 200, timeout=15)

    deliver_twice(stack, USER_DELETED, {"user_id": user})

    alert = client.get(f"{ALERTS}/{alert_id}").json()
    assert (alert["acknowledged_by"], alert["resolved_by"]) == ("deleted-user", "deleted-user")
    assert client.get(f"{RULES}/{rule_id}").json()["created_by"] == "deleted-user"
    with psycopg.connect(stack.servers.database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM telemetry.alerts WHERE %(u)s IN (acknowledged_by, resolved_by) "
            "UNION ALL SELECT count(*) FROM telemetry.alert_rules WHERE created_by = %(u)s",
            {"u": user},
        ).fetchall()
    assert left == [(0,), (0,)]

    # The events still name the user; a read model rebuilt from them (replay) must not bring the name back.
    again = unique("rule")
    with_js(stack, lambda js: js.publish(rule_subject(again), json_encoder.encode(
        AlertRuleCreated(rule_id=again, rule=spec, at=now, by=user))))  # fmt: skip
    rebuilt = eventually(lambda: client.get(f"{RULES}/{again}").json() if client.get(f"{RULES}/{again}").status_code
                         == 200 else None, timeout=15)  # fmt: skip
    assert rebuilt["created_by"] == "deleted-user"


def test_a_malformed_platform_event_is_dead_lettered_with_its_reason(stack: Stack) -> None:

    async def go(js: JetStreamContext) -> str:
        marker = unique("bad")
        await js.publish(DEVICE_DELETED, f'{{"device": "{marker}"}}'.encode())  # no device_id
        sub = await js.subscribe("telemetry.dlq.platform", stream="DLQ", ordered_consumer=True)
        try:
            while True:
                letter = msgspec.json.decode((await sub.next_msg(timeout=20)).data)
                if marker in letter["payload"]:
                    return str(letter["reason"])
        finally:
            await sub.unsubscribe()

    reason = with_js(stack, go)
    assert reason.startswith(f"not a {DEVICE_DELETED} event: Object missing required field `device_id`")
