"""Timestamps as the API's clients write them."""

from datetime import datetime


def iso(t: datetime) -> str:
    """RFC 3339 with a ``Z`` for UTC, e.g. 2025-12-17T00:00:00Z."""
    return t.isoformat().replace("+00:00", "Z")
