"""Which live alert engine copies have not yet applied a rule event (rule writes wait for them)."""

from psycopg_pool import AsyncConnectionPool

# An engine copy whose heartbeat is older than this is considered gone: writes do not wait for it.
ENGINE_LIVE_WITHIN_S = 10.0

_LIVE_ENGINES = """
SELECT partition, rules_seq FROM telemetry.alert_engines
WHERE heartbeat_at > now() - make_interval(secs => %s)
"""


async def engines_behind(pool: AsyncConnectionPool, seq: int) -> list[str]:
    """The partitions of live engines whose applied rule sequence is below ``seq`` ([] when none is live).

    Live means a heartbeat within ENGINE_LIVE_WITHIN_S: an engine that stops beating stops being waited for.
    """
    async with pool.connection() as conn:
        cur = await conn.execute(_LIVE_ENGINES, (ENGINE_LIVE_WITHIN_S,), prepare=True)
        rows = await cur.fetchall()
    return sorted(str(partition) for partition, rules_seq in rows if rules_seq < seq)
