"""What a caller of the client can catch, named for the caller's decision."""


class TelemetryClientError(Exception):
    """Base of everything the client raises on purpose."""


class TelemetryApiError(TelemetryClientError):
    """The service answered with an error status; ``detail`` is its ``{"detail": ...}`` text."""

    def __init__(self, status: int, detail: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path


class ServiceUnavailable(TelemetryApiError):
    """503 or 429 still answered after every retry, or no connection: nothing was stored, try again later.

    ``status`` is 0 when no answer came at all (connection refused, timeout).
    """
