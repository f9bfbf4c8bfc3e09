"""Rate limits across gateway copies (gateway/auth/rate_share.py) over the session's real NATS."""

import asyncio

import pytest
import structlog
from litestar.exceptions import TooManyRequestsException
from nats.aio.client import Client

from gateway.auth import rate_share
from gateway.auth.rate_limit import TokenBuckets
from gateway.auth.rate_share import RateShare
from gateway.metrics import GATEWAY_REGISTRY
from tests.integration.runtime_support import until
from tests.support.ids import unique

LOG = structlog.get_logger().bind(test="rate_share")


def heard_count() -> float:
    """Requests spent at other copies that a copy in this process took from its buckets."""
    return GATEWAY_REGISTRY.get_sample_value("telemetry_rate_limit_shared_total", {"kind": "requests"}) or 0.0


# This module's own subject: the e2e test's gateway copies (another process of the suite) share on the real one.
SUBJECT = f"{rate_share.SUBJECT}.{unique('test')}"


def copy(nc: Client, rate: float = 1.0) -> tuple[RateShare, TokenBuckets, TokenBuckets]:
    """One gateway copy's buckets (burst 3 s) and its share."""
    requests, points = TokenBuckets(rate, 3.0, "requests"), TokenBuckets(rate * 10, 3.0, "points")
    return RateShare(nc, requests, points, LOG, SUBJECT), requests, points


async def test_what_one_copy_spends_is_taken_from_the_others_buckets(nc: Client) -> None:
    (share_a, req_a, pts_a), (share_b, req_b, pts_b) = copy(nc), copy(nc)
    await share_a.start()
    await share_b.start()
    try:
        key, other = unique("key"), unique("key")
        for _ in range(3):  # the whole bucket of 3 requests, at copy A
            req_a.charge(key)
        pts_a.charge(key, 30)
        heard = heard_count()
        await share_a.share()  # what the loop does every SHARE_EVERY_S
        await until(lambda: heard_count() >= heard + 3, what="B heard A")
        with pytest.raises(TooManyRequestsException):
            req_b.charge(key)  # B's own bucket was full: without the share this passed
        with pytest.raises(TooManyRequestsException):
            pts_b.charge(key, 1)
        req_b.charge(other)  # another key is untouched
        # A does not take its own report a second time: its next refusal is its own bucket's, not a double debt.
        assert req_a._buckets[key][0] > -1.5
    finally:
        await share_a.stop()
        await share_b.stop()


async def test_nothing_is_shared_while_the_limits_are_off(nc: Client) -> None:
    share, requests, _ = copy(nc, rate=0.0)
    await share.start()
    requests.charge(unique("key"))
    assert not share.active and requests.spent is None  # nothing recorded, nothing published
    await share.stop()


async def test_an_unreadable_report_is_skipped(nc: Client) -> None:
    share, requests, _ = copy(nc)
    await share.start()
    try:
        await nc.publish(SUBJECT, b"not json")
        key = unique("key")
        heard = heard_count()
        other, other_requests, _ = copy(nc)
        await other.start()
        other_requests.charge(key)
        await other.share()
        await until(lambda: heard_count() >= heard + 1, what="the good report heard")
        await asyncio.sleep(0)
        assert requests._buckets[key][0] == pytest.approx(2.0, abs=0.1)  # 3 - the one spent at the other copy
        await other.stop()
    finally:
        await share.stop()
