"""The web console's first paint in headless Chromium, as a ratio to a bare page from the same gateway.

One gateway (own NATS and PostgreSQL, no workers: the page and the stats read need none). Per round, each
in a fresh browser context (empty cache, empty sessionStorage), in alternating order:
* baseline: ``/health``, a small JSON body Chromium shows as text: the cost of a round trip and a paint;
* console: ``/`` as a first-time visitor sees it (the sign-in form): HTML, CSS, uPlot and app.js;
* console signed in: ``/#stats`` with a key already in sessionStorage, until the service figures are on
  the page (first API answer drawn).
First paint is the Performance API's ``first-contentful-paint`` entry; "load" is the load event.

``python -m tests.bench.console`` (a minute at most); writes docs/benchmarks-console.md.
Knob: BENCH_CONSOLE_ROUNDS (15).
"""

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Browser

from tests.bench.scratch import scratch_dir
from tests.support.browser import ARGS, CHROMIUM, chromium
from tests.support.servers import start_servers
from tests.support.stack import Stack

REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-console.md"
_FCP = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
_LOAD = "performance.getEntriesByType('navigation')[0]?.loadEventEnd"
_BYTES = "performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0)"
_NAV_BYTES = "performance.getEntriesByType('navigation')[0]?.transferSize"


@dataclass
class Result:
    rounds: int
    fcp: dict[str, list[float]] = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)
    data: list[float] = field(default_factory=list)
    bytes: dict[str, int] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


BASELINE, CONSOLE, SIGNED_IN = "/health (baseline)", "console, signed out", "console, signed in (#stats)"


def _measure(browser: Browser, url: str, name: str, result: Result, key: str | None = None) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        if key is not None:
            context.add_init_script(f"sessionStorage.setItem('telemetry.apiKey', {key!r})")
        page = context.new_page()
        page.goto(url, wait_until="load")
        if key is not None:  # until the figures of the first API answer are on the page
            page.wait_for_selector("#stats-cards .card", timeout=15_000)
            result.data.append(page.evaluate("performance.now()"))
        # Polled from here: the page's CSP (no eval) rules out wait_for_function's in-page polling.
        deadline = time.monotonic() + 15
        while (fcp := page.evaluate(_FCP)) is None and time.monotonic() < deadline:
            page.wait_for_timeout(20)
        assert fcp is not None, f"{url}: no first-contentful-paint entry"
        result.fcp.setdefault(name, []).append(float(fcp))
        result.load.setdefault(name, []).append(float(page.evaluate(_LOAD)))
        result.bytes[name] = int(page.evaluate(_BYTES)) + int(page.evaluate(_NAV_BYTES) or 0)
    finally:
        context.close()


def run(browser: Browser, stack: Stack, rounds: int) -> Result:
    result = Result(rounds, load_before=os.getloadavg())
    pages = [(BASELINE, f"{stack.url}/health", None), (CONSOLE, f"{stack.url}/", None),
             (SIGNED_IN, f"{stack.url}/#stats", stack.api_key)]  # fmt: skip
    _measure(browser, f"{stack.url}/", "warm-up", Result(0))  # the gateway's first request pays for imports
    for r in range(rounds):
        for name, url, key in pages if r % 2 == 0 else reversed(pages):
            _measure(browser, url, name, result, key)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.0f} ms" for n, v in result.fcp.items()), flush=True)
    result.load_after = os.getloadavg()
    return result


def report(result: Result) -> str:
    fcp = {name: statistics.median(v) for name, v in result.fcp.items()}
    load = {name: statistics.median(v) for name, v in result.load.items()}
    rows = "\n".join(
        f"| {name} | {fcp[name]:.0f} | {min(result.fcp[name]):.0f} to {max(result.fcp[name]):.0f} | "
        f"{fcp[name] / fcp[BASELINE]:.2f} | {load[name]:.0f} | {result.bytes[name] / 1024:.1f} |"
        for name in result.fcp
    )
    version = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return f"""# Web console benchmark: first paint

Written by `python -m tests.bench.console` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

Headless {version or "Chromium"} (flags: {" ".join(ARGS)}) on the same machine as one gateway; each
page load in a fresh browser context (empty cache). {result.rounds} rounds, alternating the order of the pages;
figures are medians over rounds, in milliseconds from the start of navigation.

| page | first contentful paint (ms) | range over rounds | ratio to baseline | load event (ms) | KiB transferred |
|---|---|---|---|---|---|
{rows}

Signed in, the service figures (`GET /api/v1/telemetry/stats` drawn as cards) are on the page after
{statistics.median(result.data):.0f} ms (median; range {min(result.data):.0f} to {max(result.data):.0f}).

The baseline is the gateway's `/health` JSON shown as text: one request and a paint, so the ratio is what the
console's HTML, style sheets and scripts (uPlot 1.6.32 minified, app.js; all from the gateway, no CDN) add.

**Read with care.** Shared, loaded machine (load average {result.load_before[0]:.1f} before,
{result.load_after[0]:.1f} after): absolute figures say little, and even the ratio moves between runs.

Setup: Python {platform.python_version()}, {platform.system()} {platform.release()}.
"""


def main() -> None:
    """Own servers and gateway in a temp dir; the report written and printed."""
    rounds = int(os.environ.get("BENCH_CONSOLE_ROUNDS", "15"))
    root = scratch_dir("telemetry-bench-console-")
    servers = start_servers(root / "servers")
    stack = Stack(servers, root / "logs", suite_settings=False)
    try:
        stack.start_all(("gateway",))
        with chromium() as browser:
            result = run(browser, stack, rounds)
        text = report(result)
        REPORT.write_text(text)
        print(text)
    finally:
        stack.stop_all()
        servers.stop()


if __name__ == "__main__":
    main()
