"""Platform events out (FR-019): each appears on ``<prefix>.<name>`` with the documented payload."""

import asyncio
import json
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.aio.subscription import Subscription

from telemetry_schemas.events import AlertResolved, AlertRuleCreated, AlertTriggered, MetricDefined
from telemetry_schemas.integration import DataReceived
from tests.e2e.conftest import now_iso, point
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
PREFIX = "telemetry_service"  # the default TELEMETRY_EVENT_PREFIX, which the test stack keeps


async def next_where(sub: Subscription, key: str, value: str, within_s: float = 20) -> dict[str, Any]:
    """The first event on ``sub`` whose ``key`` is ``value`` (other tests publish on the same subjects)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        msg = await sub.next_msg(timeout=max(0.1, deadline - loop.time()))
        event: dict[str, Any] = json.loads(msg.data)
        if event.get(key) == value:
            return event


async def test_every_event_appears_on_its_subject_with_its_payload(stack: Stack) -> None:
    device, metric = unique("dev"), unique("cpu")
    nc = await nats.connect(stack.servers.nats_url)
    subs = {
        name: await nc.subscribe(f"{PREFIX}.{name}")
        for name in ("data.received", "metric.defined", "alert.rule.created", "alert.triggered", "alert.resolved")
    }
    # The server must hold the subscriptions before the first event can happen: a SUB still in the client's
    # buffer when the gateway publishes misses that event (core NATS keeps nothing for late subscribers).
    await nc.flush()
    try:
        # A rule write waits for every live alert engine, at most 5 s (VISIBLE_WITHIN_S), then answers anyway: the
        # client must wait longer than that (httpx's default 5 s timed out here when an engine was slow to reply).
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
            r = await client.post("/api/v1/telemetry/metrics", json={"name": metric, "data_type": "numeric"})
            assert r.status_code == 201, r.text
            defined = await next_where(subs["metric.defined"], "name", metric)
            decoded_metric = msgspec.json.decode(json.dumps(defined), type=MetricDefined)
            assert (decoded_metric.metric_id, defined["type"]) == (r.json()["metric_id"], "metric.defined")

            rule_body = {"name": f"hot {metric}", "metric_name": metric, "condition": ">", "threshold_value": 90,
                         "device_ids": [device]}  # fmt: skip
            r = await client.post("/api/v1/telemetry/alerts/rules", json=rule_body)
            assert r.status_code == 201, r.text
            rule_id = r.json()["rule_id"]
            created = msgspec.json.decode(
                json.dumps(await next_where(subs["alert.rule.created"], "rule_id", rule_id)), type=AlertRuleCreated
            )
            assert (created.rule.metric_name, created.rule.device_ids) == (metric, [device])

            # One batch of three points of two metrics: one data.received, counting both.
            batch = {"data_points": [point(metric=metric, value=99, ts=now_iso(-2)),
                                     point(metric=metric, value=95, ts=now_iso(-1)), point(metric="other", value=1)]}  # fmt: skip
            r = await client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json=batch)
            assert r.status_code == 200, r.text
            received = await next_where(subs["data.received"], "device_id", device)
            assert set(received) == {"device_id", "metrics_count", "points_count", "timestamp"}
            decoded = msgspec.json.decode(json.dumps(received), type=DataReceived)
            assert (decoded.metrics_count, decoded.points_count) == (2, 3)

            triggered = msgspec.json.decode(
                json.dumps(await next_where(subs["alert.triggered"], "rule_id", rule_id)), type=AlertTriggered
            )
            assert (triggered.device_id, triggered.metric_name, triggered.current_value) == (device, metric, 99)
            r = await client.put(f"/api/v1/telemetry/alerts/{triggered.alert_id}/resolve", json={"note": "done"})
            assert r.status_code == 200, r.text
            resolved = msgspec.json.decode(
                json.dumps(await next_where(subs["alert.resolved"], "alert_id", triggered.alert_id)), type=AlertResolved
            )
            assert (resolved.rule_id, resolved.note) == (rule_id, "done")
            # No second data.received for the same batch (one per batch, not per point).
            with pytest.raises(nats.errors.TimeoutError):
                await next_where(subs["data.received"], "device_id", device, within_s=1.0)
    finally:
        await nc.close()
