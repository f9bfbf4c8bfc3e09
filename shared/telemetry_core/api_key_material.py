"""How an API key is made and how it is recognised: shared by the gateway and `telemetry apikey`.

Keys are 32 random bytes (URL-safe base64), so a single SHA-256 is as good as a slow password hash:
nothing about a key can be guessed from its digest. Only the digest is published and stored.
"""

import hashlib
import secrets

KEY_PREFIX = "tsk_"


def new_key() -> tuple[str, str]:
    """A new (key_id, key): the id names the key in lists and revocations; the key is the secret."""
    return "key_" + secrets.token_hex(6), KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    """SHA-256 of the key; keys are compared by digest, the plain key is never kept."""
    return hashlib.sha256(key.encode()).digest()
