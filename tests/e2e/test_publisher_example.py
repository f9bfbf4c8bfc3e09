"""The documented example publisher (schemas/exported/examples/publish_points.py) gets points stored."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "exported" / "examples" / "publish_points.py"


def test_example_publisher_points_are_stored(stack: Stack, servers: Servers) -> None:
    device = unique("pub")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--nats-url", servers.nats_url, "--device", device, "--metric", "humidity",
         "--value", "40", "--unit", "percent", "--count", "3", "--start", "2026-01-02T03:04:05Z"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stored: stream POINTS sequence ")
    rows = wait_rows(servers, device, 3)
    assert [(r[0], r[1].isoformat(), r[3]) for r in rows] == [
        ("humidity", "2026-01-02T03:04:05+00:00", 40.0),
        ("humidity", "2026-01-02T03:04:06+00:00", 41.0),
        ("humidity", "2026-01-02T03:04:07+00:00", 42.0),
    ]
