"""Headless Chromium from the distribution's packages, driven by Playwright (the console's test and benchmark).

Playwright's own browser downloads are never used (`playwright install` is not run anywhere): the system
Chromium is launched by path. `make browser` installs it on a fresh Debian-like machine.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, sandbox (root in CI), QUIC, first-run UI or background traffic to Google: quiet and quick.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A running headless system Chromium; an AssertionError naming the fix when it is not installed."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
