from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.eventually import eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def point(metric: str = "temperature", value: Any = 25.5, ts: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"timestamp": ts or now_iso(), "metric_name": metric, "value": value, **extra}


def stored_rows(servers: Servers, device: str) -> list[tuple]:
    with psycopg.connect(servers.database_url) as conn:
        return conn.execute(
            "SELECT metric_name, time, value_type, value_num, value_text FROM telemetry.points "
            "WHERE device_id = %s ORDER BY time, metric_name",
            (device,),
        ).fetchall()


def wait_rows(servers: Servers, device: str, count: int, timeout: float = 15) -> list[tuple]:
    return eventually(lambda: (r := stored_rows(servers, device)) and len(r) == count and r, timeout=timeout,
                      what=f"{count} rows of {device}")  # fmt: skip


def wait_latest(client: httpx.Client, device: str, metric: str, **params: str) -> dict[str, Any]:
    def latest() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/telemetry/devices/{device}/metrics/{metric}/latest", params=params)
        if r.status_code not in (200, 404):
            raise RuntimeError(f"latest answered {r.status_code}: {r.text}")  # not worth waiting for
        return r.json() if r.status_code == 200 else None

    return eventually(latest, timeout=15, what=f"latest {metric} of {device}")
