"""The pools' JSON codecs: parameters encoded by msgspec (json_dumps), columns decoded by msgspec (json_loads).

Both replace the standard library's json module in every pooled connection (telemetry_core/pg_pool.py); what
PostgreSQL stores and what comes back must be the same values, including text beyond ASCII, numbers msgspec
cannot hold and nesting.
"""

from psycopg.types.json import Json, Jsonb
from psycopg_pool import AsyncConnectionPool

from telemetry_core.pg_pool import json_dumps

VALUES = [
    {"location": "salle_é", "emoji": "\U0001f321", "quote": 'a"b\\c', "n": [1, 2.5, None, True]},
    {"deep": {"deeper": {"deepest": [{"x": -0.0}]}}},
    {"big": 2**70, "small": -(2**63), "float": 1.25e-7},
    [],
    "text",
]


async def test_pooled_connections_encode_parameters_with_msgspec(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT %s::text, %s::text", (Json({"a": 1, "b": [1, 2]}), Jsonb({"a": 1})))
        # The standard library would have sent '{"a": 1, "b": [1, 2]}' (it puts spaces after separators); the
        # json type keeps the text as sent, so this tells which encoder ran.
        assert await cur.fetchone() == ('{"a":1,"b":[1,2]}', '{"a": 1}')


async def test_values_survive_the_round_trip(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        for value in VALUES:
            cur = await conn.execute("SELECT %s::json, %s::jsonb", (Json(value), Jsonb(value)))
            assert await cur.fetchone() == (value, value), value


class Celsius(float):
    """A float subclass: json.dumps writes it as a number, msgspec refuses it (TypeError)."""


def test_json_dumps_falls_back_for_what_msgspec_refuses() -> None:
    assert json_dumps({"a": 1}) == b'{"a":1}'
    assert json_dumps(2**70) == b"1180591620717411303424"
    assert json_dumps({"t": Celsius(21.5)}) == b'{"t": 21.5}'  # the standard library's spacing: the fallback ran
