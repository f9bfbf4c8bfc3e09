"""A read model rebuilt from its stream by `telemetry replay`'s own build step, compared with the live one.

projection_worker/online_replay.py builds a shadow of the model (schema telemetry_replay) from an ephemeral
consumer reading the projection's stream from sequence 1, with the projection's own ``apply``, then swaps it
in. Here the same build runs inside one REPEATABLE READ transaction that first reads the live rows and the
live checkpoint, then builds the shadow, reads it, and rolls everything back: the live model is left as it
was (a later assertion, or a retry, still sees what the workers made), and both sides see the same snapshot
of the tables the build reads (rollups recompute from rollup_hour).

The comparison only holds when the live model had applied exactly what the build applied: if the checkpoint
is elsewhere (a notice arrived meanwhile), it raises AssertionError, so ``eventually`` tries again.
"""

import contextlib
from collections.abc import Sequence
from typing import Any, LiteralString

import nats
import psycopg

from projection_worker.online_replay import Rebuild, ephemeral_consumer
from projection_worker.runner import Projection
from projection_worker.shadow_tables import create_shadows, rewriter
from telemetry_core.checkpoints import read_checkpoint
from telemetry_core.nats_conn import server_urls
from tests.support.read_models import keyed, row_differences


async def replay_differences(
    nats_url: str, database_url: str, projection: Projection, query: LiteralString, key_columns: int,
    params: Sequence[Any] = (),
) -> list[str]:  # fmt: skip
    """Rows ``query`` reads from ``projection``'s tables that a rebuild from sequence 1 would change (none: [])."""
    nc = await nats.connect(server_urls(nats_url), connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        sub, consumer, pending = await ephemeral_consumer(js, projection)
        try:
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
                async with conn.transaction(force_rollback=True):
                    live = keyed(await (await conn.execute(query, params)).fetchall(), key_columns)
                    checkpoint = await read_checkpoint(conn, projection.NAME, projection.SPEC.stream)
                    rewrite = rewriter(await create_shadows(conn, projection.TABLES))
                    rebuild = Rebuild(conn, projection, sub, rewrite)
                    rebuild.drained = pending == 0
                    while not rebuild.drained:
                        await rebuild.step()
                    shadow = await conn.execute(rewrite(query).encode(), params)  # the same query, on the shadow
                    replayed = keyed(await shadow.fetchall(), key_columns)
        finally:
            with contextlib.suppress(Exception):  # its inactive threshold removes it anyway
                await js.delete_consumer(projection.SPEC.stream, consumer)
    finally:
        await nc.close()
    if not replayed:
        raise AssertionError(f"{projection.NAME}: the rebuild has no rows for this query: nothing to compare")
    if rebuild.last_seq != checkpoint:
        raise AssertionError(f"{projection.NAME}: the live model is at {checkpoint}, the rebuild at {rebuild.last_seq}")
    return row_differences(f"{projection.NAME} (live vs replayed)", replayed, live)  # want: the replay
