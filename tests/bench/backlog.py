"""How far the workers are behind, from the durable consumers' own counters in JetStream."""

import asyncio
import os
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from telemetry_core.settings import Settings
from telemetry_core.topology import CONSUMERS, ConsumerSpec, alert_engine_consumer


def alert_consumers() -> tuple[ConsumerSpec, ...]:
    """The alert engine's durable consumers on POINTS (``alerts_<i>_of_<n>``), one per partition."""
    n = Settings.from_env(os.environ).alert_partitions
    return tuple(alert_engine_consumer(i, n) for i in range(n))


class Backlog:
    """A NATS connection used only to read consumer info."""

    def __init__(self, js: JetStreamContext, nc: Client) -> None:
        self.js = js
        self._nc = nc
        # The projection workers' consumers and the alert engine's (created by the alert-worker itself).
        self.specs: tuple[ConsumerSpec, ...] = (*CONSUMERS, *alert_consumers())

    @classmethod
    async def connect(cls, url: str) -> "Backlog":
        nc = await nats.connect(url, name="telemetry-bench")
        return cls(nc.jetstream(timeout=5.0), nc)

    async def pending_of(self, spec: ConsumerSpec) -> int:
        """Messages ``spec``'s durable consumer has not yet delivered or not yet had acked."""
        info = await self.js.consumer_info(spec.stream, spec.durable)
        return (info.num_pending or 0) + (info.num_ack_pending or 0)

    async def pending(self) -> dict[str, int]:
        """Messages not yet delivered or not yet acked, per durable consumer."""
        return {spec.durable: await self.pending_of(spec) for spec in self.specs}

    async def wait_idle(self, timeout_s: float, specs: tuple[ConsumerSpec, ...] | None = None) -> float:
        """Wait until every consumer (or those of ``specs``) has acked everything; return the seconds waited."""
        start = time.perf_counter()
        specs = self.specs if specs is None else specs
        while True:
            if not any([await self.pending_of(s) for s in specs]):
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout_s:
                raise TimeoutError(f"workers still behind after {timeout_s}s: {await self.pending()}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self._nc.close()
