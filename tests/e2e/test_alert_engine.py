"""The alert engine with real processes: breaching points → alerts; lifecycle; restarts; partitions."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import start_servers
from tests.support.stack import Stack
from tests.support.times import iso

pytestmark = pytest.mark.e2e
RULES = "/api/v1/telemetry/alerts/rules"
ALERTS = "/api/v1/telemetry/alerts"


def send(client: httpx.Client, device: str, metric: str, values: list[float], start: datetime | None = None) -> None:
    start = start or datetime.now(UTC)
    points = [
        {"timestamp": iso(start + timedelta(seconds=i)), "metric_name": metric, "value": v}
        for i, v in enumerate(values)
    ]
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
    assert r.status_code == 200, r.text


def make_rule(client: httpx.Client, metric: str, **extra: object) -> dict:
    body = {"name": f"high {metric}", "metric_name": metric, "condition": ">", "threshold_value": 90, **extra}
    r = client.post(RULES, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def alerts_of(client: httpx.Client, rule_id: str, **params: str) -> list[dict]:
    r = client.get(ALERTS, params={"rule_id": rule_id, "limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["alerts"]


def test_breaches_open_an_alert_and_the_lifecycle_works(client: httpx.Client) -> None:
    metric, device = unique("cpu"), unique("dev")
    rule = make_rule(client, metric, trigger_count=2, level="critical", device_ids=[device])
    send(client, device, metric, [95, 50, 97, 99])  # breaches 1 and 2 → one alert at the 97
    (alert,) = eventually(lambda: alerts_of(client, rule["rule_id"]), timeout=15, what="alert")
    assert (alert["device_id"], alert["metric_name"], alert["level"], alert["status"]) == (
        device,
        metric,
        "critical",
        "active",
    )
    assert (alert["current_value"], alert["threshold_value"], alert["kind"]) == (97, 90, "threshold")
    # auto_resolve (on by default, after 3600 s): when it resolves by itself if no breach follows.
    triggered_at = datetime.fromisoformat(alert["triggered_at"])
    assert alert["auto_resolve_at"] == iso(triggered_at + timedelta(seconds=3600))
    send(client, unique("other"), metric, [99, 99])  # not a targeted device
    r = client.put(f"{ALERTS}/{alert['alert_id']}/acknowledge", json={"note": "looking"})
    assert (r.status_code, r.json()["status"], r.json()["acknowledgement_note"]) == (200, "acknowledged", "looking")
    assert client.put(f"{ALERTS}/{alert['alert_id']}/acknowledge", json={}).status_code == 409
    r = client.put(f"{ALERTS}/{alert['alert_id']}/resolve", json={"note": "fixed fan"})
    assert (r.status_code, r.json()["status"]) == (200, "resolved")
    assert client.put(f"{ALERTS}/{alert['alert_id']}/resolve", json={}).status_code == 409
    stats = client.get(f"{RULES}/{rule['rule_id']}").json()
    assert stats["total_triggers"] == 1
    # During the cooldown (15 min by default) new breaches open nothing.
    send(client, device, metric, [99, 99, 99])
    send(client, device, "noise", [1])
    eventually(
        lambda: client.get("/api/v1/telemetry/devices/" + device + "/metrics").json() == sorted([metric, "noise"])
    )
    assert len(alerts_of(client, rule["rule_id"])) == 1


def test_disable_resolves_and_silences_enable_takes_effect_at_once(client: httpx.Client) -> None:
    metric, device = unique("tmp"), unique("dev")
    rule = make_rule(client, metric)
    send(client, device, metric, [95])
    eventually(lambda: alerts_of(client, rule["rule_id"]), timeout=15, what="alert")
    assert client.put(f"{RULES}/{rule['rule_id']}/enable", json={"enabled": False}).status_code == 200
    resolved = eventually(
        lambda: (a := alerts_of(client, rule["rule_id"]))[0]["status"] == "resolved" and a, timeout=15
    )
    assert (resolved[0]["resolved_by"], resolved[0]["resolution_note"]) == ("system", "rule disabled")
    send(client, device, metric, [99, 99])
    assert client.put(f"{RULES}/{rule['rule_id']}/enable", json={"enabled": True}).status_code == 200
    send(client, unique("dev2"), metric, [99])  # the very next point after enabling fires
    eventually(lambda: len(alerts_of(client, rule["rule_id"])) == 2, timeout=15, what="alert after re-enable")
    assert [a["device_id"] for a in alerts_of(client, rule["rule_id"], status="active")] != [device]


def test_no_data_alert_fires_and_clears(client: httpx.Client) -> None:
    metric, device = unique("hb"), unique("dev")
    rule = make_rule(client, metric, no_data_for=10, device_ids=[device])
    send(client, device, metric, [1])
    (alert,) = eventually(lambda: alerts_of(client, rule["rule_id"]), timeout=30, interval=0.2, what="no-data alert")
    assert (alert["kind"], alert["status"], alert["auto_resolve_at"]) == ("no_data", "active", None)
    send(client, device, metric, [2])
    cleared = eventually(lambda: (a := alerts_of(client, rule["rule_id"]))[0]["status"] == "resolved" and a, timeout=15)
    assert cleared[0]["resolution_note"] == "data resumed"


def _machines(stack: Stack, rule_id: str) -> list[str]:
    with psycopg.connect(stack.servers.database_url) as conn:
        rows = conn.execute("SELECT device_id FROM telemetry.alert_machines WHERE rule_id = %s", (rule_id,))
        return sorted(r[0] for r in rows)


def test_deleting_a_rule_resolves_its_alerts_and_removes_its_machines(client: httpx.Client, stack: Stack) -> None:
    metric, devices = unique("fan"), [unique("dev"), unique("dev")]
    rule = make_rule(client, metric, device_ids=devices, auto_resolve=False)
    for device in devices:
        send(client, device, metric, [95])
    alerts = eventually(lambda: len(a := alerts_of(client, rule["rule_id"])) == 2 and a, timeout=15, what="alerts")
    assert [a["auto_resolve_at"] for a in alerts] == [None, None]  # auto_resolve off
    assert eventually(lambda: _machines(stack, rule["rule_id"]) == sorted(devices), timeout=15, what="saved")
    assert client.delete(f"{RULES}/{rule['rule_id']}").status_code == 200
    eventually(
        lambda: {a["status"] for a in alerts_of(client, rule["rule_id"])} == {"resolved"}, timeout=15, what="resolved"
    )
    resolved = alerts_of(client, rule["rule_id"])
    assert [a["resolution_note"] for a in resolved] == ["rule deleted", "rule deleted"]
    assert eventually(lambda: _machines(stack, rule["rule_id"]) == [], timeout=15, what="machines deleted")


@pytest.fixture(scope="module")
def engine_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("engines")
    servers = start_servers(root)
    stack = Stack(servers, root / "logs")
    stack.start_all(("gateway", "ingest-worker", "projection-worker"))
    for i in range(2):  # two engine copies, each owning half of the devices
        stack.start(
            "alert-worker", f"alert-worker-{i}", TELEMETRY_ALERT_PARTITIONS="2", TELEMETRY_ALERT_PARTITION=str(i)
        )
    yield stack
    stack.stop_all()
    servers.stop()


def test_two_engines_and_a_sigkill_give_each_alert_once(engine_stack: Stack) -> None:
    metric = unique("load")
    devices = [unique("dev") for _ in range(12)]
    with httpx.Client(base_url=engine_stack.url, headers=engine_stack.headers, timeout=15) as client:
        rule = make_rule(client, metric, trigger_count=3)
        base = datetime.now(UTC)
        for round_ in range(6):  # every device breaches three times per round: one alert each, ever
            for d in devices:
                send(client, d, metric, [50, 95, 96, 97, 10], start=base + timedelta(seconds=10 * round_))
            if round_ == 2:
                engine_stack.kill("alert-worker-0")
                engine_stack.start(
                    "alert-worker", "alert-worker-0", TELEMETRY_ALERT_PARTITIONS="2", TELEMETRY_ALERT_PARTITION="0"
                )
        alerts = eventually(lambda: len(a := alerts_of(client, rule["rule_id"])) >= len(devices) and a, timeout=30)
        # Let everything drain, then the answer must still be exactly one alert per device.
        eventually(
            lambda: all(p["pending"] == 0 and p["ack_pending"] == 0 for p in engine_lag(engine_stack)), timeout=30
        )
        alerts = alerts_of(client, rule["rule_id"])
    assert sorted(a["device_id"] for a in alerts) == sorted(devices)
    assert all(a["current_value"] == 97 for a in alerts)  # the third breach opens it


def test_a_lost_partition_lock_hands_the_partition_to_the_standby(engine_stack: Stack) -> None:
    """pg_terminate_backend on the owner's lock session: the owner gives up and exits, the standby takes over."""
    partition_1 = {"TELEMETRY_ALERT_PARTITIONS": "2", "TELEMETRY_ALERT_PARTITION": "1"}
    owner = engine_stack.procs["alert-worker-1"]
    engine_stack.start("alert-worker", "alert-worker-1-standby", **partition_1)
    eventually(lambda: "partition_taken_waiting_as_standby" in engine_stack.log_tail("alert-worker-1-standby"),
               timeout=30, what="standby waiting")  # fmt: skip
    with psycopg.connect(engine_stack.servers.database_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"telemetry-lock-{owner.pid}-%",),
        ).fetchall()
    assert killed == [(True,)]
    eventually(lambda: owner.poll() is not None, timeout=15, what="owner exits")
    assert owner.returncode != 0  # a failure: a supervisor restarts it (as a standby now)
    assert "partition_lock_lost" in engine_stack.log_tail("alert-worker-1")
    eventually(lambda: "partition_lock_taken" in engine_stack.log_tail("alert-worker-1-standby"),
               timeout=15, what="standby takes the partition")  # fmt: skip
    # Both partitions evaluate: every device alerts, exactly once.
    metric, devices = unique("load"), [unique("dev") for _ in range(8)]
    with httpx.Client(base_url=engine_stack.url, headers=engine_stack.headers, timeout=15) as client:
        rule = make_rule(client, metric)
        for d in devices:
            send(client, d, metric, [95])
        alerts = eventually(lambda: len(a := alerts_of(client, rule["rule_id"])) >= len(devices) and a, timeout=30)
    assert sorted(a["device_id"] for a in alerts) == sorted(devices)


def engine_lag(stack: Stack, partitions: int = 2) -> list[dict]:
    """Each alert engine consumer's pending and unacknowledged POINTS messages."""
    import asyncio

    import nats

    async def lag() -> list[dict]:
        nc = await nats.connect(stack.servers.nats_url)
        try:
            js = nc.jetstream()
            out = []
            for i in range(partitions):
                info = await js.consumer_info("POINTS", f"alerts_{i}_of_{partitions}")
                out.append({"pending": info.num_pending, "ack_pending": info.num_ack_pending})
            return out
        finally:
            await nc.close()

    return asyncio.run(lag())


def test_health_reports_the_engine(stack: Stack) -> None:
    def engines() -> dict:
        component = httpx.get(f"{stack.url}/health/detailed", headers=stack.headers).json()["components"][
            "alert_engine"
        ]
        return component["status"] == "healthy" and component["metrics"]["engines"]

    assert eventually(engines, timeout=15)["alerts_0_of_1"]["alive"] is True
