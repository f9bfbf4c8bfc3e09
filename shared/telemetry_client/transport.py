"""What the sync and async clients share: gzip bodies, reading errors, and the retry policy (tenacity).

Retried: 503 (NATS or PostgreSQL unavailable: nothing was stored) and 429 (rate limit), honouring
``Retry-After`` when the service sends it, and a connection that could not be opened (the request never
left). Nothing else: a timeout after the request was sent may have been applied, and only the caller knows
whether repeating it is safe (points are: they upsert, and a batch_id de-duplicates).
"""

import gzip
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec
from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt

from telemetry_client.errors import ServiceUnavailable, TelemetryApiError

RETRY_STATUSES = frozenset({429, 503})
# Below this a gzip header and the CPU cost more than they save.
GZIP_MIN_BYTES = 1024


class Retryable(Exception):
    """An attempt that may be repeated; ``error`` is raised to the caller once the attempts run out."""

    def __init__(self, error: ServiceUnavailable, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        attempts: tries in all (1 = never retry).
        backoff: first wait when the service gives no ``Retry-After``; doubles each time, with jitter.
        max_wait: cap on any one wait, a ``Retry-After`` included (a service asking for an hour is not obeyed).
    """

    attempts: int = 5
    backoff: float = 0.25
    max_wait: float = 30.0

    def tenacity_args(self) -> dict[str, Any]:
        """Keyword arguments for tenacity's Retrying / AsyncRetrying."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, Retryable) and exc.retry_after is not None:
                return min(exc.retry_after, self.max_wait)
            # Exponential with jitter, so many clients told "503" together do not come back together.
            doubled = self.backoff * 2 ** min(state.attempt_number - 1, 30)
            return min(self.max_wait, doubled + random.uniform(0, self.backoff))  # noqa: S311 (not crypto)

        return {
            "stop": stop_after_attempt(max(1, self.attempts)),
            "wait": wait,
            "retry": retry_if_exception_type(Retryable),
            "reraise": True,
        }


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def encode_body(body: Any, *, gzip_bodies: bool) -> tuple[bytes, dict[str, str]]:
    """JSON-encode a body (msgspec Structs included); gzip it when asked and worth it."""
    raw = msgspec.json.encode(body)
    headers = {"Content-Type": "application/json"}
    if gzip_bodies and len(raw) >= GZIP_MIN_BYTES:
        # mtime=0: the same body compresses to the same bytes (handy when comparing captured requests).
        return gzip.compress(raw, compresslevel=6, mtime=0), {**headers, "Content-Encoding": "gzip"}
    return raw, headers


def detail_of(response: httpx.Response) -> str:
    """The API's ``detail`` (its error contract), else the body's start, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase


def check(response: httpx.Response) -> None:
    """Raise Retryable for 503/429 and TelemetryApiError for any other error status."""
    if response.status_code < 400:
        return
    method, path = response.request.method, response.request.url.path
    if response.status_code in RETRY_STATUSES:
        error = ServiceUnavailable(response.status_code, detail_of(response), method, path)
        raise Retryable(error, retry_after_seconds(response.headers.get("Retry-After")))
    raise TelemetryApiError(response.status_code, detail_of(response), method, path)


def unreachable(exc: httpx.TransportError, request: httpx.Request | None = None) -> Retryable:
    """A connection that could not be opened: worth another try."""
    where = f" ({request.method} {request.url})" if request is not None else ""
    return Retryable(ServiceUnavailable(0, f"cannot reach the service{where}: {exc}"))
