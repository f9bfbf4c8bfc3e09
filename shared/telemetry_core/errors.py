"""Error classes named for the caller's decision."""


class TelemetryError(Exception):
    """Base of our errors."""


class ConfigurationError(TelemetryError):
    """The environment is wrong; the process cannot start. The message says how to fix it."""


class PermanentError(TelemetryError):
    """Processing this message can never succeed: dead-letter it and terminate it."""


class TransientError(TelemetryError):
    """Processing may succeed later (a server is down, a timeout): nak with a delay."""


class ServiceUnavailableError(TelemetryError):
    """A backing server (NATS or PostgreSQL) is not answering; HTTP callers get 503."""
