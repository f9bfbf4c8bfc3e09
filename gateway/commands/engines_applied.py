"""The ``alert_engines`` condition of rule writes: every live alert engine has applied the rule event.

Which engines count: those whose heartbeat row (telemetry.alert_engines) is younger than
ENGINE_LIVE_WITHIN_S — one query. Those already past the sequence are done. The others are asked at
once over core NATS (RULES_APPLIED, one request, every engine replies on our inbox as soon as it has
applied the sequence: alert_worker/rules_applied.py), so the write answers within a round trip of the
slowest engine applying it, instead of within its next heartbeat plus a poll. The heartbeat rows are
still read now and then while waiting (from FALLBACK_FIRST_S, doubling to FALLBACK_MAX_S): an engine
of an older release that only writes its row is seen there, and one whose heartbeat stops is no longer
waited for. An engine that neither replies nor beats holds the write until ``wait_visible``'s deadline
(VISIBLE_WITHIN_S, 5 s); the write is durable either way and then answers as usual.
"""

import asyncio

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from gateway.commands.visibility import Condition
from gateway.views.alert_engines import engines_behind
from telemetry_core.rules_applied import applied_decoder
from telemetry_core.topology import RULES_APPLIED

FALLBACK_FIRST_S = 0.05
FALLBACK_MAX_S = 0.5

log = structlog.get_logger()


def alert_engines(pool: AsyncConnectionPool, nc: Client) -> Condition:
    """Every live alert engine copy has applied rule events up to the sequence."""

    async def reached(seq: int) -> bool:
        behind = set(await engines_behind(pool, seq))
        if not behind:
            return True
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            replies.put_nowait(msg)

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)  # before the request: no reply can come first
        try:
            await nc.publish(RULES_APPLIED, str(seq).encode(), reply=inbox)
            pause = FALLBACK_FIRST_S
            while behind:
                try:
                    msg = await asyncio.wait_for(replies.get(), pause)
                except TimeoutError:
                    behind &= set(await engines_behind(pool, seq))  # the rows: older engines, stopped beats
                    pause = min(pause * 2, FALLBACK_MAX_S)
                    continue
                try:
                    applied = applied_decoder.decode(msg.data)
                except msgspec.DecodeError:
                    log.warning("rules_applied_bad_reply", data=msg.data[:64])
                    continue
                if applied.rules_seq >= seq:
                    behind.discard(applied.partition)
            return True
        finally:
            await sub.unsubscribe()

    return reached
