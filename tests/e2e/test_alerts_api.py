"""E4: alerts. The engine's part (opening alerts) is played by publishing alert.triggered as the engine does."""

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import nats
import psycopg
import pytest

from telemetry_core.headers import EXPECTED_LAST_SUBJECT_SEQ
from telemetry_core.nats_flush import flush
from telemetry_core.topology import alert_subject
from telemetry_schemas.enums import AlertLevel
from telemetry_schemas.events import AlertTriggered
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.times import iso

pytestmark = pytest.mark.e2e
URL = "/api/v1/telemetry/alerts"
T0 = datetime(2025, 12, 18, 10, 0, tzinfo=UTC)


def triggered(
    device: str, *, at: datetime = T0, level: str = "warning", rule_id: str | None = None, **extra: Any
) -> AlertTriggered:
    fields: dict[str, Any] = {
        "alert_id": unique("alt"), "rule_id": rule_id or unique("rule"), "rule_name": "Too hot", "device_id": device,
        "metric_name": "temperature", "level": AlertLevel(level), "message": "temperature 85.5 > 80",
        "current_value": 85.5, "threshold_value": 80, "triggered_at": at, "auto_resolve_at": at + timedelta(hours=1),
        "notification_channels": ["email"],
    }  # fmt: skip
    return AlertTriggered(**{**fields, **extra})


async def _publish(nats_url: str, events: list[AlertTriggered], *, expect_new: bool = True) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for e in events:
            headers = {EXPECTED_LAST_SUBJECT_SEQ: "0"} if expect_new else None
            await js.publish(alert_subject(e.alert_id), msgspec.json.encode(e), headers=headers)
    finally:
        await nc.close()


def open_alerts(client: httpx.Client, stack: Stack, *events: AlertTriggered, expect_new: bool = True) -> None:
    """Publish like the engine (first event on the alert's subject), then wait until the read model has them."""
    asyncio.run(_publish(stack.servers.nats_url, list(events), expect_new=expect_new))
    for e in events:
        eventually(
            lambda e=e: client.get(f"{URL}/{e.alert_id}").status_code == 200,
            timeout=15,
            what=f"alert {e.alert_id} projected",
        )


def test_get_returns_the_whole_alert(client: httpx.Client, stack: Stack) -> None:
    event = triggered(unique("dev"), current_value={"raw": [1, 2]}, threshold_value="high", kind="threshold")
    open_alerts(client, stack, event)
    assert client.get(f"{URL}/{event.alert_id}").json() == {
        "alert_id": event.alert_id, "rule_id": event.rule_id, "rule_name": "Too hot", "device_id": event.device_id,
        "metric_name": "temperature", "level": "warning", "status": "active", "kind": "threshold",
        "message": "temperature 85.5 > 80", "current_value": {"raw": [1, 2]}, "threshold_value": "high",
        "triggered_at": "2025-12-18T10:00:00Z", "auto_resolve_at": "2025-12-18T11:00:00Z",
        "acknowledged_at": None, "acknowledged_by": None, "acknowledgement_note": None,
        "resolved_at": None, "resolved_by": None, "resolution_note": None, "notification_channels": ["email"],
    }  # fmt: skip


def test_list_is_newest_first_with_filters_and_counts(client: httpx.Client, stack: Stack) -> None:
    device = unique("dev")
    a = triggered(device, at=T0, level="critical")
    b = triggered(device, at=T0 + timedelta(minutes=1), level="emergency")
    c = triggered(device, at=T0 + timedelta(minutes=2), level="warning")
    d = triggered(device, at=T0 + timedelta(minutes=3), level="critical", rule_id=a.rule_id)
    open_alerts(client, stack, a, b, c, d)
    assert client.put(f"{URL}/{b.alert_id}/resolve").status_code == 200
    assert client.put(f"{URL}/{d.alert_id}/acknowledge").status_code == 200

    def ids(params: dict) -> list[str]:
        return [x["alert_id"] for x in client.get(URL, params={"device_id": device, **params}).json()["alerts"]]

    body = client.get(URL, params={"device_id": device}).json()
    assert [x["alert_id"] for x in body["alerts"]] == [d.alert_id, c.alert_id, b.alert_id, a.alert_id]
    assert [x["status"] for x in body["alerts"]] == ["acknowledged", "active", "resolved", "active"]
    # active: a, c; critical = critical or emergency and not resolved: a (active), d (acknowledged).
    assert (body["count"], body["total"], body["active_count"], body["critical_count"]) == (4, 4, 2, 2)
    assert (body["filters"], body["limit"], body["offset"]) == ({"device_id": device}, 100, 0)
    page = client.get(URL, params={"device_id": device, "limit": 2, "offset": 1}).json()
    assert [x["alert_id"] for x in page["alerts"]] == [c.alert_id, b.alert_id]
    assert (page["count"], page["total"], page["active_count"], page["critical_count"]) == (2, 4, 2, 2)
    active = client.get(URL, params={"device_id": device, "status": "active"}).json()
    assert ([x["alert_id"] for x in active["alerts"]], active["total"], active["active_count"], active["critical_count"]) == (
        [c.alert_id, a.alert_id], 2, 2, 1,
    )  # fmt: skip
    assert active["filters"] == {"device_id": device, "status": "active"}
    assert ids({"level": "critical"}) == [d.alert_id, a.alert_id]
    assert ids({"rule_id": a.rule_id}) == [d.alert_id, a.alert_id]
    window = {"start_time": iso(T0 + timedelta(minutes=1)), "end_time": iso(T0 + timedelta(minutes=3))}
    assert ids(window) == [c.alert_id, b.alert_id]  # [start, end): d at end_time is out
    echoed = client.get(URL, params={"device_id": device, **window}).json()["filters"]
    assert echoed == {"device_id": device, **window}
    resolved = client.get(URL, params={"device_id": device, "status": "resolved"}).json()
    assert (resolved["total"], resolved["active_count"], resolved["critical_count"]) == (1, 0, 0)
    assert client.get(URL, params={"rule_id": unique("none")}).json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "status"),
    [({"status": "open"}, 422), ({"level": "fatal"}, 422), ({"limit": 1001}, 422), ({"limit": 0}, 422),
     ({"start_time": "yesterday"}, 422), ({"start_time": "2025-12-18T10:00:00"}, 400), ({"device_id": "a.b"}, 400),
     ({"start_time": "2025-12-18T10:00:00Z", "end_time": "2025-12-18T10:00:00Z"}, 422)],
)  # fmt: skip
def test_bad_list_parameters(client: httpx.Client, params: dict, status: int) -> None:
    r = client.get(URL, params=params)
    assert r.status_code == status
    assert r.json()["detail"].startswith(tuple(params)), r.json()  # names the parameter at fault


def test_the_notes_may_be_sent_under_the_names_the_alert_shows_them(client: httpx.Client, stack: Stack) -> None:
    event = triggered(unique("dev"))
    open_alerts(client, stack, event)
    alert = f"{URL}/{event.alert_id}"
    acked = client.put(f"{alert}/acknowledge", json={"acknowledgement_note": "on it"}).json()
    assert acked["acknowledgement_note"] == "on it"
    done = client.put(f"{alert}/resolve", json={"resolution_note": "replaced", "note": None}).json()
    assert (done["status"], done["resolution_note"]) == ("resolved", "replaced")


def test_acknowledge_then_resolve_and_what_is_refused(client: httpx.Client, stack: Stack) -> None:
    event = triggered(unique("dev"))
    open_alerts(client, stack, event)
    alert = f"{URL}/{event.alert_id}"
    r = client.put(f"{alert}/acknowledge", json={"note": "looking into it"})
    assert r.status_code == 200
    acked = r.json()
    assert (acked["status"], acked["acknowledgement_note"]) == ("acknowledged", "looking into it")
    assert acked["acknowledged_by"].startswith("apikey:")
    assert datetime.fromisoformat(acked["acknowledged_at"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert (acked["resolved_at"], acked["resolved_by"]) == (None, None)
    assert client.get(alert).json() == acked  # readable as soon as the write returned

    r = client.put(f"{alert}/acknowledge")
    assert (r.status_code, r.json()["detail"]) == (409, f"alert {event.alert_id} is already acknowledged")

    r = client.put(f"{alert}/resolve", json={"note": "fan replaced"})
    assert r.status_code == 200
    done = r.json()
    assert (done["status"], done["resolution_note"], done["resolved_by"]) == (
        "resolved",
        "fan replaced",
        acked["acknowledged_by"],
    )
    assert done["resolved_at"] >= done["acknowledged_at"]
    assert {k: done[k] for k in ("acknowledged_at", "acknowledged_by", "acknowledgement_note")} == {
        k: acked[k] for k in ("acknowledged_at", "acknowledged_by", "acknowledgement_note")
    }
    assert client.get(alert).json() == done

    r = client.put(f"{alert}/resolve")
    assert (r.status_code, r.json()["detail"]) == (409, f"alert {event.alert_id} is already resolved")
    r = client.put(f"{alert}/acknowledge", json={"note": "late"})
    assert (r.status_code, r.json()["detail"]) == (409, f"alert {event.alert_id} is resolved")
    assert client.get(alert).json() == done


def test_an_active_alert_resolves_without_a_body(client: httpx.Client, stack: Stack) -> None:
    event = triggered(unique("dev"))
    open_alerts(client, stack, event)
    done = client.put(f"{URL}/{event.alert_id}/resolve").json()
    assert (done["status"], done["resolution_note"], done["acknowledged_at"]) == ("resolved", None, None)
    assert done["resolved_by"].startswith("apikey:")


def test_unknown_alerts_and_bad_bodies(client: httpx.Client, stack: Stack) -> None:
    missing = unique("alt")
    for r in (
        client.get(f"{URL}/{missing}"),
        client.put(f"{URL}/{missing}/acknowledge"),
        client.put(f"{URL}/{missing}/resolve"),
    ):
        assert (r.status_code, r.json()["detail"]) == (404, f"alert {missing!r} not found")
    assert client.get(f"{URL}/bad.id").status_code == 400
    event = triggered(unique("dev"))
    open_alerts(client, stack, event)
    r = client.put(f"{URL}/{event.alert_id}/acknowledge", json={"note": 5})
    assert (r.status_code, r.json()["detail"]) == (422, "note: Expected `str | null`, got `int`")
    assert client.get(f"{URL}/{event.alert_id}").json()["status"] == "active"


async def test_alert_resolved_event_is_published(stack: Stack) -> None:
    event = triggered(unique("dev"))
    await _publish(stack.servers.nats_url, [event])
    nc = await nats.connect(stack.servers.nats_url)
    sub = await nc.subscribe("telemetry_service.alert.resolved")
    await flush(nc)  # subscribed at the server before the event can be published
    try:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
            r = await client.put(f"{URL}/{event.alert_id}/resolve", json={"note": "ok"})
            assert r.status_code == 200
        while (got := json.loads((await sub.next_msg(timeout=15)).data))["alert_id"] != event.alert_id:
            pass
        assert {k: got[k] for k in ("type", "rule_id", "device_id", "note")} == {
            "type": "alert.resolved", "rule_id": event.rule_id, "device_id": event.device_id, "note": "ok",
        }  # fmt: skip
        assert got["by"].startswith("apikey:")
    finally:
        await nc.close()


def test_triggered_alerts_count_on_their_rule(client: httpx.Client, stack: Stack) -> None:
    rule = {"name": unique("r"), "metric_name": unique("m"), "condition": ">", "threshold_value": 80}
    rule_id = client.post(f"{URL}/rules", json=rule).json()["rule_id"]
    first = triggered(unique("dev"), at=T0 + timedelta(minutes=5), rule_id=rule_id)
    second = triggered(unique("dev"), at=T0, rule_id=rule_id)
    open_alerts(client, stack, first, second)
    got = eventually(
        lambda: (r := client.get(f"{URL}/rules/{rule_id}").json())["total_triggers"] == 2 and r, what="2 triggers"
    )
    assert got["last_triggered"] == iso(first.triggered_at)  # the latest, whatever the order they arrived in
    # The same alert.triggered again (a re-publish) is one alert, counted once.
    open_alerts(client, stack, first, expect_new=False)
    later = triggered(unique("dev"), at=T0 + timedelta(minutes=1), rule_id=rule_id)
    open_alerts(client, stack, later)
    got = eventually(
        lambda: (r := client.get(f"{URL}/rules/{rule_id}").json())["total_triggers"] >= 3 and r, what="3rd trigger"
    )
    assert (got["total_triggers"], got["last_triggered"]) == (3, iso(first.triggered_at))
    assert client.get(URL, params={"rule_id": rule_id}).json()["total"] == 3


def test_replay_rebuilds_the_same_alerts_and_trigger_counts(
    stack: Stack, servers: Servers, client: httpx.Client
) -> None:
    rule = {"name": unique("r"), "metric_name": unique("m"), "condition": ">", "threshold_value": 80}
    rule_id = client.post(f"{URL}/rules", json=rule).json()["rule_id"]
    events = [triggered(unique("dev"), at=T0 + timedelta(minutes=i), rule_id=rule_id) for i in range(3)]
    open_alerts(client, stack, *events)
    client.put(f"{URL}/{events[0].alert_id}/acknowledge", json={"note": "n"})
    client.put(f"{URL}/{events[1].alert_id}/resolve")

    def snapshot() -> tuple[list[tuple], list[tuple]]:
        with psycopg.connect(servers.database_url) as conn:
            alerts = conn.execute(
                "SELECT *, current_value::text, threshold_value::text FROM telemetry.alerts ORDER BY alert_id"
            ).fetchall()
        # The statistics as clients see them: the alerts projection's, joined to the rules at read time.
        rules = client.get(f"{URL}/rules", params={"metric_name": rule["metric_name"]}).json()["rules"]
        stats = sorted((r["rule_id"], r["total_triggers"], r["last_triggered"]) for r in rules)
        return [tuple(str(v) for v in row) for row in alerts], stats

    before = snapshot()
    assert (rule_id, 3, iso(events[2].triggered_at)) in before[1]
    # Online: the projection worker keeps running; the rebuilt tables replace the live ones in one transaction.
    out = subprocess.run([sys.executable, "-m", "telemetry_core.cli", "replay", "alerts"],
                         env=stack.env(), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "replay alerts: rebuilt from" in out.stdout and "swapped in at checkpoint" in out.stdout
    assert "replay alerts: [" in out.stderr  # the progress line
    assert snapshot() == before
