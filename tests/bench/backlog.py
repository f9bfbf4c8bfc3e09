"""How far the workers are behind, from the durable consumers' own counters in JetStream."""

import asyncio
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from telemetry_core.topology import CONSUMERS, ConsumerSpec


class Backlog:
    """A NATS connection used only to read consumer info."""

    def __init__(self, js: JetStreamContext, nc: Client) -> None:
        self.js = js
        self._nc = nc

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
        return {spec.durable: await self.pending_of(spec) for spec in CONSUMERS}

    async def wait_idle(self, timeout_s: float) -> float:
        """Wait until every consumer has acked everything; return the seconds waited."""
        start = time.perf_counter()
        while True:
            if not any((await self.pending()).values()):
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout_s:
                raise TimeoutError(f"workers still behind after {timeout_s}s: {await self.pending()}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self._nc.close()
