"""The SUBSCRIPTIONS bucket: expiry of idle subscriptions, keep-alive, and no resurrection after DELETE."""

import asyncio
import time

from nats.aio.client import Client
from nats.js.api import KeyValueConfig

from gateway.live.subscriptions_kv import SubscriptionStore
from telemetry_core.settings import Settings
from telemetry_core.topology import SUBSCRIPTIONS_BUCKET, ensure_subscriptions_bucket
from telemetry_schemas.api.stream import SubscribeRequest
from tests.support.ids import unique


async def short_lived_store(nc: Client, ttl_s: float) -> SubscriptionStore:
    kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket=unique("SUBS"), history=1, ttl=ttl_s))
    return SubscriptionStore(kv)


async def test_a_subscription_nobody_touches_expires_and_a_touched_one_lives(nc: Client) -> None:
    store = await short_lived_store(nc, ttl_s=1.5)
    idle = await store.create(SubscribeRequest(device_ids=["d1"]), "tester")
    kept = await store.create(SubscribeRequest(), "tester")
    stored = await store.get(kept.subscription_id)
    assert stored is not None and stored.subscription == kept
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:  # touched every 0.5 s, for longer than two TTLs
        stored = await store.touch(stored)
        assert stored is not None
        await asyncio.sleep(0.5)
    assert await store.get(idle.subscription_id) is None
    assert await store.get(kept.subscription_id) is not None


async def test_a_touch_never_resurrects_a_cancelled_subscription(nc: Client) -> None:
    store = await short_lived_store(nc, ttl_s=60)
    sub = await store.create(SubscribeRequest(max_frequency=250), "tester")
    stored = await store.get(sub.subscription_id)
    assert stored is not None
    other_copy = await store.touch(stored)  # another gateway's socket touched it: a newer revision
    assert other_copy is not None and other_copy.revision > stored.revision
    assert await store.touch(stored) is not None  # a stale revision re-reads and succeeds
    assert await store.cancel(sub.subscription_id) is True
    assert await store.touch(stored) is None
    assert await store.get(sub.subscription_id) is None
    assert await store.cancel(sub.subscription_id) is False


async def test_the_bucket_ttl_follows_the_setting(nc: Client, settings: Settings) -> None:
    js = nc.jetstream()
    await ensure_subscriptions_bucket(js, Settings(subscription_ttl_s=45))
    assert (await js.stream_info(f"KV_{SUBSCRIPTIONS_BUCKET}")).config.max_age == 45
    await ensure_subscriptions_bucket(js, settings)
    assert (await js.stream_info(f"KV_{SUBSCRIPTIONS_BUCKET}")).config.max_age == settings.subscription_ttl_s
