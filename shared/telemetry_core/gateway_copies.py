"""`telemetry run`'s gateway processes: TELEMETRY_GATEWAY_PROCESSES copies sharing one port (SO_REUSEPORT).

One gateway is one event loop: it tops out at one core however many the machine has. Copies of it on the
same port, each binding with SO_REUSEPORT, let the kernel spread connections across cores. Nothing a copy
holds must be shared with another: live streams, API key revocations, definitions and subscriptions travel
over NATS, and every copy reads PostgreSQL through a pool of its own.
"""

import math
import os
import sys

from telemetry_core.settings import Settings
from telemetry_core.supervisor import Child

# All copies' pools together stay within this (the embedded PostgreSQL allows 200 connections; workers need some).
_POOL_BUDGET = 120


def gateway_process_count(settings: Settings) -> int:
    """TELEMETRY_GATEWAY_PROCESSES, or one per core when 0."""
    return settings.gateway_processes or os.cpu_count() or 1


def gateway_children(settings: Settings, env: dict[str, str]) -> list[Child]:
    """The gateway copies to start, named gateway (one) or gateway-<i>, each with a pool within the budget."""
    count = gateway_process_count(settings)
    if count == 1:
        return [Child("gateway", [sys.executable, "-m", "telemetry_core.cli", "gateway"], env)]
    pool_max = min(settings.db_pool_max, max(2, math.floor(_POOL_BUDGET / count)))
    copy_env = {**env, "TELEMETRY_GATEWAY_REUSE_PORT": "on", "TELEMETRY_DB_POOL_MAX": str(pool_max)}
    argv = [sys.executable, "-m", "telemetry_core.cli", "gateway"]
    return [Child(f"gateway-{i}", argv, copy_env) for i in range(count)]
