"""The small parts of authentication: token buckets, trusted networks, principals' scopes, auth settings."""

import pytest
from litestar.exceptions import TooManyRequestsException

from gateway.auth.principal import Principal
from gateway.auth.rate_limit import TokenBuckets
from gateway.auth.trusted_networks import InternalCalls
from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings
from telemetry_schemas.enums import ApiKeyScope


def test_a_bucket_refuses_past_its_size_and_keys_are_separate() -> None:
    buckets = TokenBuckets(rate=3, burst_s=1, what="requests")
    for _ in range(3):
        buckets.charge("a")
    with pytest.raises(TooManyRequestsException) as refused:
        buckets.charge("a")
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.detail == "rate limit: at most 3 requests per second for this key; retry in 1s"
    buckets.charge("b")  # another key has its own bucket


def test_a_large_cost_passes_a_full_bucket_then_waits_for_the_debt() -> None:
    buckets = TokenBuckets(rate=10, burst_s=1, what="points")
    buckets.charge("k", 50)  # more than the bucket holds: admitted once, 40 points in debt
    with pytest.raises(TooManyRequestsException) as refused:
        buckets.charge("k", 1)
    assert int(refused.value.headers["Retry-After"]) >= 4  # (40 + 1) / 10 per second, rounded up


def test_rate_zero_is_unlimited() -> None:
    buckets = TokenBuckets(rate=0, burst_s=1, what="requests")
    for _ in range(10_000):
        buckets.charge("k")


def test_internal_calls_need_the_switch_the_value_and_the_network() -> None:
    on = InternalCalls(Settings.from_env({"TELEMETRY_TRUST_INTERNAL_CALLS": "on",
                                          "TELEMETRY_TRUSTED_NETWORKS": "10.0.0.0/8,::1/128"}))  # fmt: skip
    assert on.trusted("true", "10.1.2.3")
    assert on.trusted("TRUE", "::1")
    assert not on.trusted("true", "127.0.0.1")
    assert not on.trusted("1", "10.1.2.3")
    assert not on.trusted(None, "10.1.2.3")
    assert not on.trusted("true", "testclient")  # not an address
    off = InternalCalls(Settings.from_env({"TELEMETRY_TRUSTED_NETWORKS": "10.0.0.0/8"}))
    assert not off.trusted("true", "10.1.2.3")


def test_auth_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="TELEMETRY_TRUSTED_NETWORKS: 'nowhere' is not an IP network"):
        Settings.from_env({"TELEMETRY_TRUSTED_NETWORKS": "nowhere"})
    with pytest.raises(ConfigurationError, match="TELEMETRY_TRUST_INTERNAL_CALLS must be on or off"):
        Settings.from_env({"TELEMETRY_TRUST_INTERNAL_CALLS": "maybe"})
    defaults = Settings.from_env({})
    assert (defaults.trust_internal_calls, defaults.rate_limit_requests, defaults.rate_limit_points) == (False, 0, 0)


def test_admin_may_everything_others_only_their_scope() -> None:
    admin = Principal("a", frozenset({ApiKeyScope.ADMIN}), "apikey", "a")
    reader = Principal("r", frozenset({ApiKeyScope.READ}), "apikey", "r")
    device = Principal("d", frozenset({ApiKeyScope.INGEST}), "apikey", "d", frozenset({"d1"}))
    assert all(admin.may(s) for s in ApiKeyScope)
    assert [s for s in ApiKeyScope if reader.may(s)] == [ApiKeyScope.READ]
    assert (device.may_write("d1"), device.may_write("d2"), admin.may_write("d2")) == (True, False, True)


def test_the_scope_table_names_routes_that_exist() -> None:
    # A renamed route would silently need admin (fail closed): make the rename fail here instead.
    import re

    from gateway.app import create_app
    from gateway.auth import scopes

    app = create_app(Settings())
    served = {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
        for route in app.routes
        for method in getattr(route, "methods", ())
    }
    assert scopes._INGEST - served == set()
    assert scopes._READ_POSTS - served == set()
