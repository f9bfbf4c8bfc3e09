"""Error classes named for the caller's decision, and which failures mean "a server is away"."""

import nats.errors
import nats.js.errors
import psycopg
import psycopg.errors


class TelemetryError(Exception):
    """Base of our errors."""


class ConfigurationError(TelemetryError):
    """The environment is wrong; the process cannot start. The message says how to fix it."""


class PermanentError(TelemetryError):
    """Processing this message can never succeed: dead-letter it and terminate it."""


class TransientError(TelemetryError):
    """Processing may succeed later (a server is down, a timeout): retry with back-off, never dead-letter."""


class ServiceUnavailableError(TelemetryError):
    """A backing server (NATS or PostgreSQL) is not answering; HTTP callers get 503."""


# Failures that say "the server is away or slow", not "this message is wrong".
_AWAY = (
    TransientError,
    ServiceUnavailableError,
    ConnectionError,
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later can succeed: a TransientError, or NATS / PostgreSQL being unreachable.

    PostgreSQL's OperationalError covers a lost or refused connection, pool checkout timeouts, deadlocks
    and serialization failures; a statement timeout (QueryCanceled) is not counted, since the same
    message would time out again.
    """
    if isinstance(exc, _AWAY):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)
