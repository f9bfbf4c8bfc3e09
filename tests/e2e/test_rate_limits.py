"""Per-key rate limits: requests per second and points per second, 429 with Retry-After past them."""

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import point
from tests.support.auth import bearer, gateway_copy, jwt_env, token
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

LIMITS = jwt_env(
    TELEMETRY_RATE_LIMIT_REQUESTS="0.5", TELEMETRY_RATE_LIMIT_POINTS="1.25", TELEMETRY_RATE_LIMIT_BURST="4"
)


@pytest.fixture(scope="module")
def limited(stack: Stack, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Each test uses a token with its own subject, so each has its own buckets.
    # Slow refills (a token every 2 s, a point every 0.8 s) into buckets of 2 requests and 5 points: the refill
    # between a test's requests stays below one token even when a loaded machine takes a second to answer them
    # (with 2 requests/s and a 1 s burst, a slow first two requests let the third one through).
    with gateway_copy(servers, tmp_path_factory.mktemp("limited"), **LIMITS) as copy:
        yield copy


def test_requests_past_the_limit_get_429_with_retry_after(limited: Stack) -> None:
    headers = bearer(token(unique("user")))
    url = f"{limited.url}/api/v1/telemetry/metrics"
    answers = [httpx.get(url, headers=headers) for _ in range(4)]
    # A bucket of 2 requests: the third within 2 s is refused, and told when one token is back (at most 2 s).
    assert [r.status_code for r in answers[:3]] == [200, 200, 429]
    refused = answers[2]
    wait = refused.headers["retry-after"]
    assert wait in ("1", "2")
    assert refused.json()["detail"] == f"rate limit: at most 0.5 requests per second for this key; retry in {wait}s"
    # Another caller is not affected by the first one's budget.
    assert httpx.get(url, headers=bearer(token(unique("user")))).status_code == 200


def test_points_past_the_limit_get_429(limited: Stack) -> None:
    headers = bearer(token(unique("device"), scope="ingest"))
    url = f"{limited.url}/api/v1/telemetry/devices/{unique('dev')}/telemetry/batch"
    # A full bucket (5 points) admits one batch of 10, which leaves the key 5 points in debt (4 s to repay).
    first = httpx.post(url, json={"data_points": [point(ts=f"2026-01-01T00:00:{i:02d}Z") for i in range(10)]},
                       headers=headers)  # fmt: skip
    assert first.status_code == 200, first.text
    second = httpx.post(url, json={"data_points": [point()]}, headers=headers)
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["detail"].startswith("rate limit: at most 1.25 points per second for this key")


def shared_requests(copy: Stack) -> float:
    """Requests spent at other copies that ``copy`` has taken from its buckets (its /metrics).

    Read with a token of its own each time: a scrape spends from its caller's bucket like any request, and a
    key polled into its limit would read nothing while the tested key's bucket refilled.
    """
    text = httpx.get(f"{copy.url}/metrics", headers=bearer(token(unique("scraper"), scope="admin"))).text
    prefix = 'telemetry_rate_limit_shared_total{kind="requests"} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_a_keys_budget_holds_across_gateway_copies(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> None:
    # As `telemetry run` starts one gateway per core on one port: a key's connections land on either copy.
    # A bucket of 2 requests refilling one every 10 s: a slow machine cannot refill it during the test.
    env = jwt_env(TELEMETRY_RATE_LIMIT_REQUESTS="0.1", TELEMETRY_RATE_LIMIT_BURST="20")
    with (
        gateway_copy(servers, tmp_path_factory.mktemp("shared_a"), **env) as first,
        gateway_copy(servers, tmp_path_factory.mktemp("shared_b"), **env) as other,
    ):
        headers = bearer(token(unique("user")))
        path = "/api/v1/telemetry/metrics"
        before = shared_requests(other)
        # The whole bucket (2 requests) spent at the first copy...
        assert [httpx.get(first.url + path, headers=headers).status_code for _ in range(2)] == [200, 200]
        eventually(lambda: shared_requests(other) >= before + 2, timeout=10, what="the other copy took both")
        # ...is spent at the other one too: without sharing its own full bucket let this request through.
        refused = httpx.get(other.url + path, headers=headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"].startswith("rate limit: at most 0.1 requests per second for this key")
        # Another key is untouched there.
        assert httpx.get(other.url + path, headers=bearer(token(unique("user")))).status_code == 200


def test_limits_are_off_by_default(stack: Stack) -> None:
    url = f"{stack.url}/api/v1/telemetry/metrics"
    assert {httpx.get(url, headers=stack.headers).status_code for _ in range(30)} == {200}
