"""deploy/grafana's query-API panels (Infinity data source) against the running service.

Each Infinity target is sent as Grafana would send it (variables substituted, same method, URL and body)
for a series this test ingested: it must answer 200, its root_selector must find rows, every column
selector must be a field of each row with the declared type, and the series panel must show the values
that were ingested. A renamed path, parameter or field breaks this test.
"""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import wait_latest, wait_rows
from tests.e2e.test_alerts_api import open_alerts, triggered
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "telemetry_dashboard.json"
INFINITY = "yesoreyeram-infinity-datasource"
_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # what Grafana's ${__from:date:iso} gives


def infinity_targets() -> list[tuple[str, dict[str, Any]]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t) for p in doc["panels"] for t in p.get("targets", [])
            if t.get("datasource", {}).get("type") == INFINITY]  # fmt: skip


def substitute(text: str, variables: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        assert m[1] in variables, f"the dashboard uses ${{{m[1]}}}, which this test (and the dashboard?) lacks"
        return variables[m[1]]

    return _VARIABLE.sub(one, text)


def select(body: Any, selector: str) -> Any:
    for part in filter(None, selector.split(".")):
        body = body[part]
    return body


def test_every_variable_the_panels_use_is_defined() -> None:
    doc = json.loads(DASHBOARD.read_text())
    defined = {v["name"] for v in doc["templating"]["list"]} | {"__from:date:iso", "__to:date:iso"}
    used = {m for _, t in infinity_targets() for m in _VARIABLE.findall(json.dumps(t))}
    assert used and used <= defined | {"infinity"}
    assert len(infinity_targets()) >= 5


def test_every_query_panel_reads_the_api(client: httpx.Client, stack: Stack, servers: Servers) -> None:
    device = unique("grafana")
    now = datetime.now(UTC).replace(microsecond=0)
    values = [20.0 + i for i in range(5)]
    points = [{"timestamp": iso(now - timedelta(minutes=5 - i)), "metric_name": "temperature", "value": v,
               "unit": "celsius"} for i, v in enumerate(values)]  # fmt: skip
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
    assert r.status_code == 200 and r.json()["ingested_count"] == 5, r.text
    open_alerts(client, stack, triggered(device, at=now - timedelta(minutes=1)))
    wait_rows(servers, device, 5)
    wait_latest(client, device, "temperature")
    # Rollups and device statistics are projections: wait until they hold all five points too.
    params = {"metric_name": "temperature", "device_id": device, "aggregation_type": "avg", "interval": 60,
              "start_time": iso(now - timedelta(hours=1)), "end_time": iso(now + timedelta(minutes=1))}  # fmt: skip
    eventually(lambda: sum(b["count"] for b in client.get("/api/v1/telemetry/aggregated", params=params).json()["data_points"]) == 5,
               timeout=15, what="rollups of the five points")  # fmt: skip
    eventually(lambda: client.get(f"/api/v1/telemetry/devices/{device}/stats").json()["data_points_count"] == 5,
               timeout=15, what="device statistics of the five points")  # fmt: skip
    variables = {
        "telemetry_url": stack.url, "device": device, "metric": "temperature", "aggregation": "avg",
        "interval": "60", "__from:date:iso": iso(now - timedelta(hours=1)), "__to:date:iso": iso(now + timedelta(minutes=1)),
    }  # fmt: skip
    checked = []
    for title, target in infinity_targets():
        options = target.get("url_options", {})
        url = substitute(target["url"], variables)
        body = substitute(options["data"], variables) if options.get("data") else None
        headers = {**stack.headers, "Content-Type": options.get("body_content_type", "application/json")}
        answer = httpx.request(options.get("method", "GET"), url, content=body, headers=headers, timeout=15)
        assert answer.status_code == 200, f"{title}: {answer.status_code} {answer.text}"
        found = select(answer.json(), target["root_selector"])
        rows = found if isinstance(found, list) else [found]
        assert rows, f"{title}: root_selector {target['root_selector']!r} found no rows"
        for column in target["columns"]:
            for row in rows:
                cell = select(row, column["selector"])
                if column["type"] == "number":
                    assert isinstance(cell, int | float) and not isinstance(cell, bool), f"{title}: {column} = {cell!r}"
                elif column["type"] == "timestamp":
                    datetime.fromisoformat(cell.replace("Z", "+00:00"))
        checked.append((title, rows))
    by_title = dict(checked)
    series = next(rows for title, rows in checked if "POST /query" in title)
    assert [row["value"] for row in series] == values
    aggregated = next(rows for title, rows in checked if "GET /aggregated" in title)
    assert sum(row["count"] for row in aggregated) == 5
    assert sum(row["value"] * row["count"] for row in aggregated) == pytest.approx(sum(values))
    assert by_title["Latest ${metric} of ${device}"][0]["value"] == values[-1]
    assert [row["device_id"] for row in by_title["Alerts of ${device} (newest first)"]] == [device]
    assert by_title["Statistics of ${device}"][0]["data_points_count"] == 5
