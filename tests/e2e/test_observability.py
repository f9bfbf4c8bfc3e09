"""/metrics, the request id across processes, and every worker's heartbeat in /health/detailed."""

import json
import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from telemetry_core.topology import CONSUMERS
from tests.e2e.conftest import point
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
BATCH_ROUTE = "/api/v1/telemetry/devices/{device_id}/telemetry/batch"


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, parsed by prometheus-client's own parser: (name, labels) -> value."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_metrics_parse_and_counters_move_with_traffic(client: httpx.Client, stack: Stack) -> None:
    before = scrape(client)
    device = unique("dev")
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch",
                    json={"data_points": [point(), point("humidity", 40), point(value="not a number but fine"),
                                          {"metric_name": "x"}]})  # fmt: skip
    assert r.status_code == 200 and r.json()["ingested_count"] == 3
    after = scrape(client)
    ok = {"route": BATCH_ROUTE, "method": "POST", "status": "200"}
    assert (
        value(after, "telemetry_http_requests_total", **ok) == value(before, "telemetry_http_requests_total", **ok) + 1
    )
    lat = {"route": BATCH_ROUTE, "method": "POST"}
    count = "telemetry_http_request_duration_seconds_count"
    assert value(after, count, **lat) == value(before, count, **lat) + 1
    assert value(after, "telemetry_points_accepted_total") == value(before, "telemetry_points_accepted_total") + 3
    assert value(after, "telemetry_points_rejected_total") == value(before, "telemetry_points_rejected_total") + 1
    assert value(after, "telemetry_publish_duration_seconds_count") >= value(
        before, "telemetry_publish_duration_seconds_count") + 1  # fmt: skip
    for spec in CONSUMERS:
        assert ("telemetry_consumer_pending", frozenset({("stream", spec.stream), ("consumer", spec.durable)})) in after
        assert ("telemetry_projection_lag_messages", frozenset({("consumer", spec.durable)})) in after
    # The workers' figures arrive through their reports (each second).
    written = "telemetry_ingest_points_written_total"
    eventually(lambda: value(scrape(client), written, process="ingest-worker") >= value(
        before, written, process="ingest-worker") + 3, timeout=15, what="ingest worker's figures")  # fmt: skip

    def workers_counted() -> bool:
        final = scrape(client)
        assert value(final, "telemetry_alert_points_evaluated_total") > 0
        applied = "telemetry_projection_messages_applied_total"
        assert value(final, applied, process="projection-worker", projection="device_stats") > 0
        return value(final, "telemetry_consumer_messages_total", consumer="ingest", outcome="ack") > 0

    eventually(workers_counted, timeout=15, what="alert, projection and consumer figures")
    assert httpx.get(f"{stack.url}/metrics").status_code == 401


def test_a_request_id_is_returned_and_logged_by_the_gateway_and_the_workers(client: httpx.Client, stack: Stack) -> None:
    rid = unique("trace")
    device = unique("dev")
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": [point()]},
                    headers={"X-Request-ID": rid})  # fmt: skip
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    for process in ("gateway", "ingest-worker", "projection-worker", "alert-worker"):
        eventually(lambda p=process: rid in (stack.log_dir / f"{p}.log").read_text(errors="replace"), timeout=15,
                   what=f"{rid} in the {process} log")  # fmt: skip
    # Without one, the gateway makes one and returns it (not logged for a success: nobody asked to trace it).
    generated = client.get(f"/api/v1/telemetry/devices/{device}/stats").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # A malformed one is replaced, never carried into NATS headers or logs.
    odd = client.get(f"/api/v1/telemetry/devices/{device}/stats", headers={"X-Request-ID": "a b\tc"})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])


def test_every_process_tunes_its_garbage_collector_at_start(stack: Stack) -> None:
    # A process that skipped tune_gc would spend up to half its CPU per point on collections (gc_tuning.py).
    for process in ("gateway", "ingest-worker", "projection-worker", "alert-worker"):
        lines = [json.loads(line) for line in (stack.log_dir / f"{process}.log").read_text(errors="replace")
                 .splitlines() if '"gc tuned"' in line]  # fmt: skip
        assert lines, f"no 'gc tuned' line in the {process} log"
        assert lines[-1]["gc_thresholds"] == [50_000, 20, 10], lines[-1]
        assert lines[-1]["frozen_objects"] > 1000, lines[-1]


def _workers(stack: Stack) -> dict:
    return httpx.get(f"{stack.url}/health/detailed", headers=stack.headers, timeout=5).json()["components"]["workers"]


def test_a_killed_worker_shows_down_within_10_s_and_up_after_restart(stack: Stack) -> None:
    eventually(lambda: _workers(stack)["status"] == "healthy", timeout=15, what="all workers up")
    stack.kill("projection-worker")
    killed = time.monotonic()
    try:
        down = eventually(lambda: (w := _workers(stack))["status"] == "unhealthy" and w, timeout=10,
                          what="projection worker down")  # fmt: skip
        assert time.monotonic() - killed <= 10
        assert down["metrics"]["projection-worker"]["alive"] is False
        assert down["metrics"]["ingest-worker"]["alive"] is True
        assert "projection-worker" in down["detail"]
        assert httpx.get(f"{stack.url}/health", timeout=5).status_code == 200  # fast and unaffected
    finally:
        stack.start("projection-worker")
    up = eventually(lambda: (w := _workers(stack))["status"] == "healthy" and w, timeout=30, what="back up")
    assert up["metrics"]["projection-worker"]["heartbeat_age_s"] < 5
