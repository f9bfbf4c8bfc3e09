"""Rule changes made while the alert engine is down govern the points accepted after them, not those before.

Processes and a SIGKILL: the engine restarts with a disable and an enable waiting in EVENTS and three points in
POINTS, one accepted before each change and one after both. Every change carries POINTS' last sequence
(``points_seq``) and the restarted engine applies each when it reaches it (alert_worker/rules.py). Before that, the
restarted engine applied every change at once and evaluated all three points under the last one.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_alert_engine import alerts_of, engine_lag, make_rule, send
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import start_servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
RULES = "/api/v1/telemetry/alerts/rules"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("rule-changes")
    servers = start_servers(root)
    stack = Stack(servers, root / "logs")
    stack.start_all()
    yield stack
    stack.stop_all()
    servers.stop()


def test_changes_made_while_the_engine_was_down_apply_from_their_own_points_on(own_stack: Stack) -> None:
    metric = unique("temp")
    before, disabled, after = unique("before"), unique("disabled"), unique("after")
    with httpx.Client(base_url=own_stack.url, headers=own_stack.headers, timeout=30) as client:
        rule = make_rule(client, metric)  # enabled; the engine has it once this answers
        own_stack.kill("alert-worker")
        send(client, before, metric, [95])  # accepted while the rule is enabled
        # The write waits for the engine it still believes alive (its heartbeat is recent), then answers anyway.
        r = client.put(f"{RULES}/{rule['rule_id']}/enable", json={"enabled": False})
        assert (r.status_code, r.json()["enabled"]) == (200, False), r.text
        send(client, disabled, metric, [96])  # accepted while it is disabled
        r = client.put(f"{RULES}/{rule['rule_id']}/enable", json={"enabled": True})
        assert (r.status_code, r.json()["enabled"]) == (200, True), r.text
        send(client, after, metric, [97])  # accepted once it is enabled again
        own_stack.start("alert-worker")
        eventually(lambda: len(alerts_of(client, rule["rule_id"])) >= 2, timeout=30, what="the alerts")
        eventually(lambda: engine_lag(own_stack, 1) == [{"pending": 0, "ack_pending": 0}], timeout=30,
                   what="the engine evaluated every point")  # fmt: skip
        alerts = alerts_of(client, rule["rule_id"])
    assert sorted(a["device_id"] for a in alerts) == sorted([before, after])
    assert {a["device_id"]: a["current_value"] for a in alerts} == {before: 95, after: 97}
