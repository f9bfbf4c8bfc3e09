"""Migration 0018's telemetry.dd_merge gives the same sketch as 0013's, on small and on TOASTed (large) sketches.

0013 looked each key of the new sketch up in the stored one (`a ->> key`), which detoasted a large stored
sketch once per key; 0018 runs the same formula on a copy detoasted once. The result must be the same jsonb value
(same keys, same counts, nothing dropped or doubled) whatever the overlap, including empty sketches.
"""

import json
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


async def test_fold_adds_every_sketch_of_the_array_to_the_stored_one(pool: AsyncConnectionPool) -> None:
    # Migration 0023's dd_fold (the compaction's merge of an hour's pending sketches): the sum, key by key, of the
    # stored sketch and every one of the array, byte for byte what dd_merge builds one by one.
    rng = random.Random(23)
    cases: list[tuple[dict[str, int], list[dict[str, int]]]] = [({}, [{}]), ({"z": 1}, [{}, {}]), ({}, [{"p3": 2}])]
    cases += [(sketch(rng, rng.randrange(0, 150)), [sketch(rng, rng.randrange(0, 12)) for _ in range(rng.randrange(1, 30))])
              for _ in range(30)]  # fmt: skip
    cases += [(sketch(rng, 3000), [sketch(rng, 300) for _ in range(3)])]  # a stored sketch over the TOAST limit
    async with pool.connection() as conn:
        for a, deltas in cases:
            row = await (
                await conn.execute("SELECT telemetry.dd_fold(%s, %s)::text", (Jsonb(a), Jsonb(deltas)))
            ).fetchone()
            one_by_one = Jsonb(a)
            for d in deltas:
                merged = await (
                    await conn.execute("SELECT telemetry.dd_merge(%s, %s)", (one_by_one, Jsonb(d)))
                ).fetchone()
                assert merged is not None
                one_by_one = Jsonb(merged[0])
            reference = await (await conn.execute("SELECT %s::jsonb::text", (one_by_one,))).fetchone()
            want = {
                k: a.get(k, 0) + sum(d.get(k, 0) for d in deltas) for k in a.keys() | {k for d in deltas for k in d}
            }
            assert row is not None and reference is not None
            assert row[0] == reference[0]
            assert json.loads(row[0]) == want
