"""Short-lived tokens that let a socket connect to one subscription without sending an API key.

Browsers cannot set headers on a WebSocket request, and a key in a URL ends up in proxy logs; a token
is bound to one subscription id and expires, so a logged URL is worth little. Every gateway copy
verifies every copy's tokens: the key is derived from the signing key they share.
"""

import base64
import hashlib
import hmac
import time

_PURPOSE = b"telemetry connect token v1"


class ConnectTokens:
    """Mint and verify ``<expiry unix seconds>.<base64url HMAC-SHA256 of "<subscription_id>.<expiry>">``."""

    def __init__(self, signing_key: bytes, ttl_s: int) -> None:
        self._key = hmac.new(signing_key, _PURPOSE, hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _mac(self, subscription_id: str, expiry: int) -> str:
        digest = hmac.new(self._key, f"{subscription_id}.{expiry}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def mint(self, subscription_id: str, now: float | None = None) -> tuple[str, int]:
        """A token for ``subscription_id`` and its expiry (unix seconds)."""
        expiry = int(now if now is not None else time.time()) + self.ttl_s
        return f"{expiry}.{self._mac(subscription_id, expiry)}", expiry

    def valid(self, token: str, subscription_id: str, now: float | None = None) -> bool:
        """Whether ``token`` was minted for ``subscription_id`` and has not expired (constant-time compare)."""
        expiry_text, dot, mac = token.partition(".")
        if not dot or not expiry_text.isdigit() or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        if expiry < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(mac, self._mac(subscription_id, expiry))
