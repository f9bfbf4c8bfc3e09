"""Issue 16: the web console in a real browser (headless system Chromium via Playwright) against the real stack.

One walk through the console as a person would use it: sign in, open a device, chart a point the test
ingested, follow the series live while the test ingests another, acknowledge an alert the engine opened,
read the service stats, and check the phone-width layout. A screenshot of each page is written under the
pytest basetemp (console-screenshots/), never into the repository.
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from telemetry_core.api_key_material import key_digest
from tests.e2e.conftest import point, wait_latest
from tests.support.browser import chromium
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
API = "/api/v1/telemetry"
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000
CONSOLE = Path(__file__).resolve().parents[2] / "gateway" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage); fails the test on any script error or CSP violation it logged."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, timezone_id="UTC")
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(message: ConsoleMessage) -> None:
        # A failed API call the test provokes (the wrong key) logs a 401 resource error; everything else counts.
        if message.type == "error" and "401" not in message.text:
            problems.append(f"console error: {message.text}")

    tab.on("console", on_console)
    tab.set_default_timeout(WAIT_MS)
    yield tab
    context.close()
    assert problems == []


def test_the_console_files_are_public_and_outside_the_api_document(stack: Stack, client: httpx.Client) -> None:
    page = httpx.get(f"{stack.url}/", timeout=10)  # no key
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Telemetry console</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]  # no inline or remote scripts
    script = httpx.get(f"{stack.url}/console/app.js", timeout=10)  # httpx asks for gzip, and unpacks it
    assert script.status_code == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["content-encoding"] == "gzip" and script.content == CONSOLE.joinpath("app.js").read_bytes()
    plain = httpx.get(f"{stack.url}/console/app.js", headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "content-encoding" not in plain.headers and plain.content == script.content
    vendored = httpx.get(f"{stack.url}/console/vendor/uPlot.iife.min.js", timeout=10)
    assert vendored.status_code == 200 and b"uPlot" in vendored.content
    # Only the files of the console folder, by name: nothing else in the package can be named.
    for path in ("/console/nope.js", "/console/%2e%2e/app.py", "/console/..%2Froutes%2Fconsole.py"):
        assert httpx.get(f"{stack.url}{path}", timeout=10).status_code == 404, path
    # (A plain ../ is resolved by the client: an unknown route, 401 without a key like every other.)
    assert httpx.get(f"{stack.url}/console/../routes/console.py", timeout=10).status_code == 401
    assert httpx.get(f"{stack.url}/console/vendor/NOTICE.md", timeout=10).status_code == 404
    # Public pages, not public API: the API next to them still wants a key, and the document lists no console.
    assert httpx.get(f"{stack.url}{API}/stats", timeout=10).status_code == 401
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/" not in paths and not [p for p in paths if p.startswith("/console")]


def _send(client: httpx.Client, device: str, *points: dict[str, Any]) -> None:
    r = client.post(f"{API}/devices/{device}/telemetry/batch", json={"data_points": list(points)})
    assert r.status_code == 200 and r.json()["ingested_count"] == len(points), r.text


def _local(t: datetime) -> str:
    """A datetime-local input's value; the browser context runs in UTC."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_sign_in_chart_live_alerts_and_stats_in_a_browser(
    page: Page, stack: Stack, client: httpx.Client, shots: Path
) -> None:
    device, metric = unique("console"), unique("temp")
    rule = client.post(f"{API}/alerts/rules", json={
        "name": f"hot {metric}", "metric_name": metric, "condition": ">", "threshold_value": 90,
        "device_ids": [device], "level": "critical",
    })  # fmt: skip
    assert rule.status_code == 201, rule.text
    now = datetime.now(UTC)
    _send(client, device, point(metric, 42.5, _iso(now - timedelta(seconds=30))),
          point(metric, 95.5, _iso(now - timedelta(seconds=20))))  # fmt: skip
    wait_latest(client, device, metric)

    # Sign in: a wrong key is refused and kept nowhere; the right one opens the console.
    page.goto(f"{stack.url}/")
    page.fill("#api-key", "not-a-key")
    page.click("#sign-in-form button")
    expect(page.locator("#message")).to_contain_text("Sign-in failed: 401")
    assert page.evaluate("sessionStorage.getItem('telemetry.apiKey')") is None
    page.fill("#api-key", stack.api_key)
    page.click("#sign-in-form button")
    expect(page.locator("#nav")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('telemetry.apiKey')") == stack.api_key

    # Devices: the device's metrics with their latest values.
    page.fill("#device-id", device)
    page.click("#device-form button")
    row = page.locator(f"#device-metrics tr[data-metric='{metric}']")
    expect(row).to_contain_text("95.5")
    page.screenshot(path=shots / "devices.png", full_page=True)

    # Chart: the ingested points over the last 24 hours, raw, drawn by uPlot.
    row.get_by_role("button", name="Chart").click()
    plot = page.locator("#chart-plot")
    expect(plot).to_have_attribute("data-count", "2")
    expect(plot).to_have_attribute("data-last", "95.5")
    expect(plot.locator("canvas")).to_have_count(1)
    expect(page.locator("#chart-summary")).to_contain_text("source: raw")
    expect(page.locator("#chart-points")).to_contain_text("42.5")
    page.screenshot(path=shots / "chart.png", full_page=True)
    # A long range is aggregated and answered from the hour rollups: the console says so.
    page.select_option("#chart-range", "30d")
    page.click("#chart-form button[type=submit]")
    expect(page.locator("#chart-summary")).to_have_attribute("data-source", "rollup_hour")
    expect(page.locator("#chart-summary")).to_contain_text("of 21600 s, avg")
    # A chosen range (POST /query): raw points up to a day; three days, 5-minute buckets from the minute rollups.
    page.select_option("#chart-range", "custom")
    page.fill("#chart-start", _local(now - timedelta(hours=1)))
    page.fill("#chart-end", _local(now + timedelta(minutes=1)))
    page.click("#chart-form button[type=submit]")
    expect(page.locator("#chart-summary")).to_contain_text("2 points, raw · source: raw")
    expect(plot).to_have_attribute("data-last", "95.5")
    page.fill("#chart-start", _local(now - timedelta(days=3)))
    page.click("#chart-form button[type=submit]")
    expect(page.locator("#chart-summary")).to_contain_text("of 300 s, avg · source: rollup_minute")

    # Live: follow the series over the WebSocket (connect token), then see a new point arrive.
    page.click("#nav a[data-view=live]")
    page.fill("#live-device", device)
    page.fill("#live-metric", metric)
    page.click("#live-start")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "following")
    _send(client, device, point(metric, 77.25))
    expect(page.locator("#live-points")).to_contain_text("77.25")
    expect(page.locator("#live-plot")).to_have_attribute("data-last", "77.25")
    expect(page.locator("#live-plot")).to_have_attribute("data-count", "3")  # the last hour's 2, then the live one
    # A dropped socket (as when its token expired: 4001) comes back with a fresh token and ?since, no repeats.
    page.evaluate("live.socket.close(4001, 'test: as if the connect token had expired')")
    expect(page.locator("#live-status")).not_to_have_attribute("data-state", "following")
    _send(client, device, point(metric, 78.5))
    expect(page.locator("#live-points")).to_contain_text("78.5")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "following")
    expect(page.locator("#live-points tr", has_text="77.25")).to_have_count(1)
    page.screenshot(path=shots / "live.png", full_page=True)
    page.click("#live-stop")
    expect(page.locator("#live-status")).to_have_text("Not following.")

    # Alerts: the engine opened one for the 95.5; acknowledge it from the page.
    alerts = eventually(
        lambda: client.get(f"{API}/alerts", params={"rule_id": rule.json()["rule_id"]}).json()["alerts"],
        timeout=15, what="the alert of the console's rule",
    )  # fmt: skip
    alert_id = alerts[0]["alert_id"]
    page.click("#nav a[data-view=alerts]")
    alert_row = page.locator(f"#alerts-table tr[data-alert-id='{alert_id}']")
    expect(alert_row.locator(".status")).to_have_text("active")
    expect(page.locator(f"#rules-table tr[data-rule-id='{rule.json()['rule_id']}']")).to_contain_text(metric)
    page.screenshot(path=shots / "alerts.png", full_page=True)
    alert_row.get_by_role("button", name="Acknowledge").click()
    expect(alert_row.locator(".status")).to_have_text("acknowledged")
    stored = client.get(f"{API}/alerts/{alert_id}").json()
    assert (stored["status"], stored["acknowledged_by"]) == (
        "acknowledged",
        f"apikey:{key_digest(stack.api_key).hex()[:12]}",
    )
    expect(alert_row.get_by_role("button", name="Acknowledge")).to_have_count(0)  # only an active alert offers it
    alert_row.get_by_role("button", name="Resolve").click()
    expect(alert_row.locator(".status")).to_have_text("resolved")
    assert client.get(f"{API}/alerts/{alert_id}").json()["status"] == "resolved"

    # Stats: the service figures, the device just used among them.
    page.click("#nav a[data-view=stats]")
    devices_card = page.locator("#stats-cards .card", has_text="Devices").first
    expect(devices_card).to_contain_text(re.compile(r"[1-9]"))
    expect(page.locator("#stats-hours .bar")).to_have_count(24)
    page.screenshot(path=shots / "stats.png", full_page=True)

    # Phone width: every view fits the screen (wide tables scroll inside their own box).
    page.set_viewport_size(PHONE)
    for view in ("devices", "chart", "live", "alerts", "stats"):
        page.click(f"#nav a[data-view={view}]")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], view
        page.screenshot(path=shots / f"phone-{view}.png", full_page=True)
