"""How a deleted user's id is kept: only its SHA-256 (telemetry.erased_principals, migration 0011).

One function for the projection worker that records a deletion and the gateways that refuse the user's tokens,
so both recognise the same user; telemetry.is_erased computes the same hash in SQL.
"""

import hashlib


def principal_sha256(principal: str) -> str:
    """Hex SHA-256 of the id's UTF-8 bytes."""
    return hashlib.sha256(principal.encode()).hexdigest()
