"""Migration 0018's telemetry.dd_merge gives the same sketch as 0013's, on small and on TOASTed (large) sketches.

0013 looked each key of the new sketch up in the stored one (`a ->> key`), which detoasted a large stored
sketch once per key; 0018 runs the same formula on a copy detoasted once. The result must be the same jsonb value
(same keys, same counts, nothing dropped or doubled) whatever the overlap, including empty sketches.
"""

import random

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

# 0013's body, verbatim, as the reference.
OLD_MERGE = """
SELECT a || coalesce(
    (SELECT jsonb_object_agg(e.key, e.value::bigint + coalesce((a ->> e.key)::bigint, 0)) FROM jsonb_each_text(b) e),
    '{}'::jsonb
) FROM (SELECT %(a)s::jsonb AS a, %(b)s::jsonb AS b) x
"""


def sketch(rng: random.Random, keys: int) -> dict[str, int]:
    return {f"{rng.choice('pn')}{rng.randrange(0, 3 * keys + 1)}": rng.randrange(1, 10**6) for _ in range(keys)}


async def test_merge_equals_the_0013_merge(pool: AsyncConnectionPool) -> None:
    rng = random.Random(2021)
    cases = [({}, {}), ({"z": 1}, {}), ({}, {"p3": 2}), ({"p1": 1, "n2": 2}, {"p1": 5, "z": 1})]
    cases += [(sketch(rng, rng.randrange(0, 40)), sketch(rng, rng.randrange(0, 40))) for _ in range(40)]
    cases += [(sketch(rng, 3000), sketch(rng, 300)) for _ in range(3)]  # a stored hour sketch far over the TOAST limit
    async with pool.connection() as conn:
        for a, b in cases:
            params = {"a": Jsonb(a), "b": Jsonb(b)}
            new = await (await conn.execute("SELECT telemetry.dd_merge(%(a)s, %(b)s)", params)).fetchone()
            old = await (await conn.execute(OLD_MERGE, params)).fetchone()
            want = {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}
            assert new is not None and old is not None
            assert new[0] == old[0] == want


async def test_merge_into_a_stored_toasted_sketch(pool: AsyncConnectionPool) -> None:
    # As the rollup_hour upsert calls it: the stored value comes from a table row (compressed / out of line).
    rng = random.Random(7)
    stored, delta = sketch(rng, 4000), sketch(rng, 500)
    async with pool.connection() as conn:
        await conn.execute("CREATE TEMP TABLE sketches (s jsonb)")
        await conn.execute("INSERT INTO sketches VALUES (%s)", (Jsonb(stored),))
        size = await (await conn.execute("SELECT pg_column_size(s) < octet_length(s::text) FROM sketches")).fetchone()
        assert size == (True,)  # compressed: the detoasting case
        await conn.execute("UPDATE sketches SET s = telemetry.dd_merge(s, %s)", (Jsonb(delta),))
        row = await (await conn.execute("SELECT s FROM sketches")).fetchone()
    assert row is not None
    assert row[0] == {k: stored.get(k, 0) + delta.get(k, 0) for k in stored.keys() | delta.keys()}
