"""Unique names per test, so tests sharing servers never see each other's data."""

import uuid


def unique(prefix: str) -> str:
    """A subject-safe unique id such as dev_3f2a9c1b7d."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
