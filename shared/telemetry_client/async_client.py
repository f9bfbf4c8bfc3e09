"""The asyncio client (httpx.AsyncClient), with the same operations as TelemetryClient plus ``stream``."""

from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying

from telemetry_client import calls
from telemetry_client.errors import TelemetryClientError
from telemetry_client.streaming import read_stream
from telemetry_client.sync_client import auth_headers
from telemetry_client.transport import Retryable, RetryPolicy, check, encode_body, unreachable
from telemetry_schemas.api.alerts import AlertList, AlertResponse
from telemetry_schemas.api.ingest import BatchIngestResponse, SingleIngestResponse
from telemetry_schemas.api.queries import (
    AggregatedDataResponse,
    Aggregation,
    DeviceMetricsResponse,
    LatestValueResponse,
    QueryRequest,
    TelemetryDataResponse,
)
from telemetry_schemas.api.stream import StreamMessage, SubscribeRequest, SubscribeResponse
from telemetry_schemas.values import Point

T = TypeVar("T")


class AsyncTelemetryClient:
    """Asyncio client; arguments as for TelemetryClient. Use ``async with``, or ``await aclose()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        gzip: bool = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.gzip = gzip
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=auth_headers(api_key), timeout=timeout)

    async def __aenter__(self) -> "AsyncTelemetryClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _once(self, call: calls.Call[T]) -> T:
        content, headers = (b"", {}) if call.body is None else encode_body(call.body, gzip_bodies=self.gzip)
        try:
            response = await self._http.request(call.method, call.path, params=call.params,
                                                content=content or None, headers=headers)  # fmt: skip
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise unreachable(exc) from exc
        check(response)
        return call.decoder.decode(response.content)

    async def execute(self, call: calls.Call[T]) -> T:
        """Run one call, retrying as the policy says; raise ServiceUnavailable once the attempts run out."""
        attempts = self.retry if call.retry else RetryPolicy(attempts=1)
        try:
            async for attempt in AsyncRetrying(**attempts.tenacity_args()):
                with attempt:
                    return await self._once(call)
        except Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def send(self, device_id: str, point: Point) -> SingleIngestResponse:
        """Store one point; returns once it is durable."""
        return await self.execute(calls.send_point(device_id, point))

    async def send_batch(self, device_id: str, points: Sequence[Point],
                         batch_id: str | None = None) -> BatchIngestResponse:  # fmt: skip
        """Store up to 1000 points of one device (partial success: see ``errors``)."""
        return await self.execute(calls.send_batch(device_id, points, batch_id))

    async def query(self, request: QueryRequest) -> TelemetryDataResponse:
        """Points (raw or aggregated) over [start_time, end_time)."""
        return await self.execute(calls.query(request))

    async def latest(self, device_id: str, metric_name: str, lookback: str | None = None) -> LatestValueResponse:
        """Newest value of one series."""
        return await self.execute(calls.latest(device_id, metric_name, lookback))

    async def device_metrics(self, device_id: str) -> DeviceMetricsResponse:
        """Metric names the device has data for."""
        return await self.execute(calls.device_metrics(device_id))

    async def aggregated(self, metric_name: str, aggregation: Aggregation, interval: int, start: datetime,
                         end: datetime, device_id: str | None = None) -> AggregatedDataResponse:  # fmt: skip
        """One value per ``interval`` seconds."""
        return await self.execute(calls.aggregated(metric_name, aggregation, interval, start, end, device_id))

    async def alerts(self, **filters: Any) -> AlertList:
        """A page of alerts: status, level, device_id, rule_id, limit, offset."""
        return await self.execute(calls.alerts(**filters))

    async def acknowledge(self, alert_id: str, note: str | None = None) -> AlertResponse:
        """Acknowledge an active alert (409 otherwise)."""
        return await self.execute(calls.alert_transition(alert_id, "acknowledge", note))

    async def resolve(self, alert_id: str, note: str | None = None) -> AlertResponse:
        """Resolve an active or acknowledged alert."""
        return await self.execute(calls.alert_transition(alert_id, "resolve", note))

    async def subscribe(self, request: SubscribeRequest) -> SubscribeResponse:
        """Create a subscription (open it with ``stream``)."""
        return await self.execute(calls.subscribe(request))

    async def unsubscribe(self, subscription_id: str) -> None:
        """Cancel a subscription."""
        await self.execute(calls.unsubscribe(subscription_id))

    async def stream(self, request: SubscribeRequest, *, since: int | None = None,
                     reconnect: bool = True) -> AsyncIterator[StreamMessage]:  # fmt: skip
        """Subscribe and yield live messages; the subscription is cancelled when the iteration stops."""
        sub = await self.subscribe(request)

        async def fresh_token() -> str:
            return (await self.execute(calls.connect_token(sub.subscription_id))).connect_token

        try:
            async for message in read_stream(self.base_url, sub.websocket_url, sub.connect_token, fresh_token,
                                             since=since, reconnect=reconnect):  # fmt: skip
                yield message
        finally:
            with suppress(TelemetryClientError, httpx.HTTPError):
                await self.unsubscribe(sub.subscription_id)
