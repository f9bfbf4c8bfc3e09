"""Machine states and the engine's stream position, saved together in one transaction."""

import msgspec
from psycopg import AsyncConnection

from telemetry_core.alerting.state_machine import Machine
from telemetry_core.checkpoints import advance_checkpoint, delete_checkpoint, read_checkpoint

_LOAD = "SELECT rule_id, device_id, state FROM telemetry.alert_machines WHERE partition = %s"
_SAVE = """
INSERT INTO telemetry.alert_machines (partition, rule_id, device_id, state) VALUES (%s, %s, %s, %s)
ON CONFLICT (partition, rule_id, device_id) DO UPDATE SET state = EXCLUDED.state
"""
_DELETE = "DELETE FROM telemetry.alert_machines WHERE partition = %s AND rule_id = %s AND device_id = %s"
_HEARTBEAT = """
INSERT INTO telemetry.alert_engines (partition, rules_seq, heartbeat_at, late_points) VALUES (%s, %s, now(), %s)
ON CONFLICT (partition) DO UPDATE SET rules_seq = EXCLUDED.rules_seq, heartbeat_at = now(),
    late_points = EXCLUDED.late_points
"""

_RESET_MACHINES = "DELETE FROM telemetry.alert_machines WHERE partition = %s"

Key = tuple[str, str]  # (rule_id, device_id)
_encoder = msgspec.json.Encoder()


async def load(conn: AsyncConnection, partition: str, stream: str) -> tuple[dict[Key, Machine], int]:
    """Every machine of the partition, and the last POINTS sequence they reflect."""
    cur = await conn.execute(_LOAD, (partition,))
    machines = {(r, d): msgspec.convert(state, Machine) for r, d, state in await cur.fetchall()}
    return machines, await read_checkpoint(conn, partition, stream)


async def save(
    conn: AsyncConnection, partition: str, stream: str, machines: dict[Key, Machine], changed: set[Key], seq: int
) -> None:
    """Write the changed machines and advance the checkpoint, atomically.

    A changed key with no machine any more (its rule was deleted) deletes the machine's row.
    """
    kept = [(partition, r, d, _encoder.encode(machines[(r, d)]).decode()) for r, d in changed if (r, d) in machines]
    gone = [(partition, r, d) for r, d in changed if (r, d) not in machines]
    async with conn.transaction(), conn.cursor() as cur:
        if kept:
            await cur.executemany(_SAVE, kept)
        if gone:
            await cur.executemany(_DELETE, gone)
        await advance_checkpoint(conn, partition, stream, seq)


async def heartbeat(conn: AsyncConnection, partition: str, rules_seq: int, late_points: int) -> None:
    """Tell gateways which rule events this engine has applied, and that it is alive."""
    async with conn.transaction():
        await conn.execute(_HEARTBEAT, (partition, rules_seq, late_points))


async def reset(conn: AsyncConnection, partition: str, stream: str) -> None:
    """Forget every machine of the partition and its checkpoint, atomically (``telemetry replay <engine>``)."""
    async with conn.transaction():
        await conn.execute(_RESET_MACHINES, (partition,))
        await delete_checkpoint(conn, partition, stream)
