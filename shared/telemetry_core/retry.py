"""Named tenacity policies, reused wherever we connect at start-up."""

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential


def connect_retrying(max_seconds: float = 30.0) -> AsyncRetrying:
    """Retry a start-up connection with backoff for up to ``max_seconds``, then give up loudly."""
    return AsyncRetrying(
        stop=stop_after_delay(max_seconds),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception_type(Exception),
        reraise=True,
    )
