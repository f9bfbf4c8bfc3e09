"""Online replay: a read model rebuilt beside the live one and swapped in equals one built live only.

Two databases share one private NATS: in both, the projections' own runner (what the projection worker runs)
applies every message as it arrives — "live". In database A each projection is also replayed online while more
history is still being published and applied live; database B is never replayed. After the last message both
must hold the same rows, whatever the random history. Histories accumulate across examples (streams and
databases are kept), so later examples replay longer streams.
"""

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from ingest_worker.notices import build_notice
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from projection_worker.main import PROJECTIONS
from projection_worker.online_replay import ephemeral_consumer, replay_online
from projection_worker.runner import Projection, ProjectionRunner
from telemetry_core.embedded import start_nats
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_core.topology import (
    alert_subject,
    api_key_subject,
    dlq_subject,
    ensure_topology,
    metric_subject,
    rule_subject,
    stored_subject,
)
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.dead_letter import DeadLetter
from telemetry_schemas.enums import AlertLevel, ApiKeyScope, Comparison, DataType
from telemetry_schemas.events import (
    AlertAcknowledged,
    AlertResolved,
    AlertRuleCreated,
    AlertRuleDeleted,
    AlertRuleEnabled,
    AlertRuleUpdated,
    AlertTriggered,
    ApiKeyCreated,
    ApiKeyRevoked,
    MetricDefined,
    MetricDeleted,
)
from telemetry_schemas.rules import RuleSpec
from telemetry_schemas.values import Point
from tests.support.own_database import copy_of, own_database

# Every projection (the projection worker's list). tests/e2e also replays alert rules and alerts online against
# the running stack, with histories made through the API (test_alert_rules_api, test_alerts_api).
REPLAYED: list[Projection] = list(PROJECTIONS)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)

points_step = st.tuples(
    st.just("points"),
    st.integers(0, 2),  # device
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 150), st.integers(-50, 50)), min_size=1, max_size=6),
)
define_step = st.tuples(st.just("define"), st.integers(0, 2), st.integers(1, 3650))
delete_step = st.tuples(st.just("delete"), st.integers(0, 2), st.just(0))
dead_step = st.tuples(st.just("dead"), st.sampled_from(["ingest", "alert"]), st.integers(0, 5))
rule_step = st.tuples(st.just("rule"), st.integers(0, 3), st.tuples(st.integers(0, 2), st.integers(-5, 5)))
alert_step = st.tuples(st.just("alert"), st.integers(0, 2), st.integers(0, 3))
key_step = st.tuples(st.just("key"), st.integers(0, 1), st.integers(0, 2))
histories = st.lists(
    st.one_of(points_step, points_step, define_step, delete_step, dead_step, rule_step, alert_step, key_step),
    min_size=1, max_size=30,
)  # fmt: skip


class World:
    """The private NATS, the two databases, and the live runners of both."""

    def __init__(self, js: JetStreamContext, urls: tuple[str, str]) -> None:
        self.js, self.urls = js, urls
        self.pools = [make_pool(u, max_size=4) for u in urls]
        self.partitions = [PartitionCache(), PartitionCache()]
        self.live: list[tuple[ProjectionRunner, Any]] = []

    async def open(self) -> None:
        for pool in self.pools:
            await pool.open(wait=True)
        for pool in self.pools:
            for p in REPLAYED:
                sub, _, _ = await ephemeral_consumer(self.js, p)
                self.live.append((ProjectionRunner(pool, p), sub))

    async def close(self) -> None:
        for _, sub in self.live:
            await sub.unsubscribe()
        for pool in self.pools:
            await pool.close()

    async def drain(self) -> None:
        """Apply every message published so far, in every live runner (what the projection worker does)."""
        for runner, sub in self.live:
            while (await sub.consumer_info()).num_pending:
                await runner(await sub.fetch(500, timeout=2.0))

    async def publish(self, step: tuple[Any, ...]) -> None:
        kind, a, b = step
        if kind == "points":
            device = f"dev_{a}"
            points = [Point(timestamp=T0 + timedelta(seconds=s), metric_name=f"m{m}", value=float(v)) for m, s, v in b]
            seq = next(_seq)
            rows = RowSet()
            for p in points:
                rows.add(device, p, seq)
            inserted: Any = None
            for pool, cache in zip(self.pools, self.partitions, strict=True):
                async with pool.connection() as conn:
                    await cache.ensure(conn, rows.days())
                    inserted = await write_rows(conn, rows.rows())
            await self.js.publish(
                stored_subject(device), json_encoder.encode(build_notice(device, seq, points, inserted))
            )
        elif kind == "define":
            event = MetricDefined(metric_id=f"id{next(_seq)}", name=f"m{a}", data_type=DataType.NUMERIC,
                                  retention_days=b, created_at=T0, created_by="prop")  # fmt: skip
            await self.js.publish(metric_subject(f"m{a}"), json_encoder.encode(event))
        elif kind == "delete":
            # Names the current definition only sometimes (a stale delete must be a no-op both ways).
            event_d = MetricDeleted(metric_id=f"id{next(_seq) - 1}", name=f"m{a}", deleted_at=T0, deleted_by="prop")
            await self.js.publish(metric_subject(f"m{a}"), json_encoder.encode(event_d))
        elif kind == "rule":
            rule_id, value = f"r{b[0]}", b[1]
            spec = RuleSpec(name=f"rule{value}", metric_name="m0", condition=Comparison.GT, threshold_value=value)
            events: list[Any] = [
                AlertRuleCreated(rule_id=rule_id, rule=spec, at=T0, by="prop"),
                AlertRuleUpdated(rule_id=rule_id, rule=spec, at=T0, by="prop"),
                AlertRuleEnabled(rule_id=rule_id, enabled=value % 2 == 0, at=T0, by="prop"),
                AlertRuleDeleted(rule_id=rule_id, at=T0, by="prop"),
            ]
            await self.js.publish(rule_subject(rule_id), json_encoder.encode(events[a]))
        elif kind == "alert":
            alert_id, at = f"a{b}", T0 + timedelta(minutes=next(_seq))
            alert_events: list[Any] = [
                AlertTriggered(alert_id=alert_id, rule_id=f"r{b % 3}", rule_name="r", device_id="dev_0",
                               metric_name="m0", level=AlertLevel.WARNING, message="m", current_value=b,
                               threshold_value=1, triggered_at=at),
                AlertAcknowledged(alert_id=alert_id, at=at, by="prop", note="n"),
                AlertResolved(alert_id=alert_id, rule_id=f"r{b % 3}", device_id="dev_0", at=at, by="prop"),
            ]  # fmt: skip
            await self.js.publish(alert_subject(alert_id), json_encoder.encode(alert_events[a]))
        elif kind == "key":
            key_id = f"k{b}"
            key_event: Any = (
                ApiKeyCreated(key_id=key_id, name="k", scope=ApiKeyScope.READ, digest=f"{b:064x}", created_at=T0,
                              created_by="prop")
                if a == 0 else ApiKeyRevoked(key_id=key_id, at=T0, by="prop")
            )  # fmt: skip
            await self.js.publish(api_key_subject(key_id), json_encoder.encode(key_event))
        else:
            letter = DeadLetter(worker=a, reason="r", subject="s", stream_seq=None,
                                failed_at=T0 + timedelta(minutes=b), payload="{}")  # fmt: skip
            await self.js.publish(dlq_subject(a), json_encoder.encode(letter))


async def snapshot(url: str) -> dict[str, list[str]]:
    # updated_at of latest_values is the writer's clock (now()), the one column that differs by construction.
    out: dict[str, list[str]] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for p in REPLAYED:
            for table in p.TABLES:
                cur = await conn.execute(f"SELECT (to_jsonb(t) - 'updated_at')::text FROM {table} t".encode())
                out[table] = sorted(r[0] for r in await cur.fetchall())
    return out


@pytest.fixture(scope="module")
def world_servers(tmp_path_factory: pytest.TempPathFactory, servers: Any) -> Iterator[tuple[str, str, str]]:
    server = start_nats(tmp_path_factory.mktemp("replay-nats"))
    try:
        with own_database(servers.database_url, "replay_a") as a, copy_of(servers.database_url, a) as b:
            yield server.url, a, b
    finally:
        server.stop()


async def scenario(urls: tuple[str, str, str], history: list[tuple[Any, ...]], split: int) -> None:
    nats_url, a, b = urls
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_topology(js, Settings())
    world = World(js, (a, b))
    await world.open()
    try:
        cut = min(split, len(history))
        for step in history[:cut]:
            await world.publish(step)
        await world.drain()
        replay_settings = Settings(nats_url=nats_url, database_url=a)

        async def replays() -> list[int]:
            return [(await replay_online(replay_settings, p, out=None, js=js)).applied for p in REPLAYED]

        async def meanwhile() -> None:
            for step in history[cut:]:
                await world.publish(step)
                await world.drain()
                await asyncio.sleep(0)

        applied, _ = await asyncio.wait_for(asyncio.gather(replays(), meanwhile()), timeout=60)
        await world.drain()
        assert sum(applied) >= cut
        assert await snapshot(a) == await snapshot(b)
    finally:
        await world.close()
        await nc.close()


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories, split=st.integers(0, 25))
@example(history=[("key", 0, 0), ("key", 0, 1), ("key", 1, 0), ("points", 0, [(0, 1, 2)])], split=2)
def test_online_replay_equals_live_whatever_the_history(world_servers: tuple[str, str, str], history: list,
                                                        split: int) -> None:  # fmt: skip
    asyncio.run(scenario(world_servers, history, split))
