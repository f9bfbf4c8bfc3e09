"""The blocking client (httpx.Client): one method per operation in calls.py, retried per RetryPolicy."""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from telemetry_client import calls
from telemetry_client.errors import ServiceUnavailable
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
from telemetry_schemas.api.stats import ServiceStatsResponse
from telemetry_schemas.api.stream import SubscribeRequest, SubscribeResponse
from telemetry_schemas.values import Point

T = TypeVar("T")


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The credential header (an API key or a JWT both work as a Bearer token)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class TelemetryClient:
    """Blocking client. Use as a context manager, or call ``close()``.

    Args:
        base_url: the gateway, e.g. ``http://127.0.0.1:8218``.
        api_key: an API key or JWT; sent as ``Authorization: Bearer``.
        timeout: seconds per request.
        gzip: compress request bodies of 1 KiB or more (the gateway undoes Content-Encoding gzip).
        retry: attempts and back-off on 503 / 429 / no connection.
    """

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
        self._http = httpx.Client(base_url=self.base_url, headers=auth_headers(api_key), timeout=timeout)

    def __enter__(self) -> "TelemetryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _once(self, call: calls.Call[T]) -> T:
        content, headers = (b"", {}) if call.body is None else encode_body(call.body, gzip_bodies=self.gzip)
        try:
            response = self._http.request(call.method, call.path, params=call.params, content=content or None,
                                          headers=headers)  # fmt: skip
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise unreachable(exc) from exc
        check(response)
        return call.decoder.decode(response.content)

    def execute(self, call: calls.Call[T]) -> T:
        """Run one call, retrying as the policy says; raise ServiceUnavailable once the attempts run out."""
        attempts = self.retry if call.retry else RetryPolicy(attempts=1)
        try:
            for attempt in Retrying(**attempts.tenacity_args()):
                with attempt:
                    return self._once(call)
        except Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    # -- ingestion ---------------------------------------------------------------------------------------
    def send(self, device_id: str, point: Point) -> SingleIngestResponse:
        """Store one point; returns once it is durable."""
        return self.execute(calls.send_point(device_id, point))

    def send_batch(self, device_id: str, points: Sequence[Point], batch_id: str | None = None) -> BatchIngestResponse:
        """Store up to 1000 points of one device (partial success: see ``errors``)."""
        return self.execute(calls.send_batch(device_id, points, batch_id))

    # -- reads ---------------------------------------------------------------------------------------------
    def query(self, request: QueryRequest) -> TelemetryDataResponse:
        """Points (raw or aggregated) over [start_time, end_time)."""
        return self.execute(calls.query(request))

    def latest(self, device_id: str, metric_name: str, lookback: str | None = None) -> LatestValueResponse:
        """Newest value of one series."""
        return self.execute(calls.latest(device_id, metric_name, lookback))

    def device_metrics(self, device_id: str) -> DeviceMetricsResponse:
        """Metric names the device has data for."""
        return self.execute(calls.device_metrics(device_id))

    def aggregated(self, metric_name: str, aggregation: Aggregation, interval: int, start: datetime,
                   end: datetime, device_id: str | None = None) -> AggregatedDataResponse:  # fmt: skip
        """One value per ``interval`` seconds."""
        return self.execute(calls.aggregated(metric_name, aggregation, interval, start, end, device_id))

    def stats(self) -> ServiceStatsResponse:
        """Service statistics."""
        return self.execute(calls.service_stats())

    def export_csv(self, device_ids: Sequence[str], metric_names: Sequence[str], start: datetime,
                   end: datetime, chunk_size: int = 1 << 16) -> Iterator[bytes]:  # fmt: skip
        """Stream GET /export/csv in chunks (constant memory, any size); the first chunk is the header row."""
        params = calls.export_params(device_ids, metric_names, start, end)
        try:
            with self._http.stream("GET", calls.EXPORT_PATH, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    check(response)
                yield from response.iter_bytes(chunk_size)
        except Retryable as exc:  # no retry mid-stream: a half-written file must not be appended to again
            raise exc.error from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnavailable(0, f"cannot reach the service: {exc}") from None

    # -- alerts --------------------------------------------------------------------------------------------
    def alerts(self, **filters: Any) -> AlertList:
        """A page of alerts: status, level, device_id, rule_id, limit, offset."""
        return self.execute(calls.alerts(**filters))

    def acknowledge(self, alert_id: str, note: str | None = None) -> AlertResponse:
        """Acknowledge an active alert (409 otherwise)."""
        return self.execute(calls.alert_transition(alert_id, "acknowledge", note))

    def resolve(self, alert_id: str, note: str | None = None) -> AlertResponse:
        """Resolve an active or acknowledged alert."""
        return self.execute(calls.alert_transition(alert_id, "resolve", note))

    # -- streaming (the socket itself: AsyncTelemetryClient.stream) -------------------------------------
    def subscribe(self, request: SubscribeRequest) -> SubscribeResponse:
        """Create a subscription."""
        return self.execute(calls.subscribe(request))

    def unsubscribe(self, subscription_id: str) -> None:
        """Cancel a subscription."""
        self.execute(calls.unsubscribe(subscription_id))
