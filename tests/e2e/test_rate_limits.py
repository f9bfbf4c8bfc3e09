"""Per-key rate limits: requests per second and points per second, 429 with Retry-After past them."""

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import point
from tests.support.auth import bearer, gateway_copy, jwt_env, token
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def limited(stack: Stack, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Each test uses a token with its own subject, so each has its own buckets.
    env = jwt_env(TELEMETRY_RATE_LIMIT_REQUESTS="2", TELEMETRY_RATE_LIMIT_POINTS="5", TELEMETRY_RATE_LIMIT_BURST="1")
    with gateway_copy(servers, tmp_path_factory.mktemp("limited"), **env) as copy:
        yield copy


def test_requests_past_the_limit_get_429_with_retry_after(limited: Stack) -> None:
    headers = bearer(token(unique("user")))
    url = f"{limited.url}/api/v1/telemetry/metrics"
    answers = [httpx.get(url, headers=headers) for _ in range(4)]
    # A bucket of 2 requests: the third request within the same second is refused (the test takes far less).
    assert [r.status_code for r in answers[:2]] == [200, 200]
    refused = answers[2]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["detail"] == "rate limit: at most 2 requests per second for this key; retry in 1s"
    # Another caller is not affected by the first one's budget.
    assert httpx.get(url, headers=bearer(token(unique("user")))).status_code == 200


def test_points_past_the_limit_get_429(limited: Stack) -> None:
    headers = bearer(token(unique("device"), scope="ingest"))
    url = f"{limited.url}/api/v1/telemetry/devices/{unique('dev')}/telemetry/batch"
    # A full bucket (5 points) admits one batch of 10, which leaves the key 5 points in debt.
    first = httpx.post(url, json={"data_points": [point(ts=f"2026-01-01T00:00:{i:02d}Z") for i in range(10)]},
                       headers=headers)  # fmt: skip
    assert first.status_code == 200, first.text
    second = httpx.post(url, json={"data_points": [point()]}, headers=headers)
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["detail"].startswith("rate limit: at most 5 points per second for this key")


def test_limits_are_off_by_default(stack: Stack) -> None:
    url = f"{stack.url}/api/v1/telemetry/metrics"
    assert {httpx.get(url, headers=stack.headers).status_code for _ in range(30)} == {200}
