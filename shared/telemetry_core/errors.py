"""Error classes named for the caller's decision, and which failures mean "a server is away".

nats and psycopg are imported only when ``is_transient`` first runs: the error classes are imported by the
settings and the `telemetry` command line, and the client commands (send, query, …) need neither library
(importing them cost ~0.7 s of every command's start).
"""

import functools


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


@functools.cache
def _away() -> tuple[type[BaseException], ...]:
    """Failures that say "the server is away or slow", not "this message is wrong"."""
    import nats.errors
    import nats.js.errors

    return (
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
    import psycopg
    import psycopg.errors

    if isinstance(exc, _away()):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)
