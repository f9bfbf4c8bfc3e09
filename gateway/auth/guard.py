"""The one place requests are authenticated."""

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from gateway.state import GatewayState


def key_digest(key: str) -> bytes:
    """Keys are compared by SHA-256 digest; the plain key is never kept after start-up."""
    return hashlib.sha256(key.encode()).digest()


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key from ``X-Api-Key`` or ``Authorization: Bearer <key>``."""
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = connection.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Litestar guard: reject with 401 unless a configured key is presented.

    Routes opt out with ``public=True``, or with ``public_when="<setting>"`` when an operator switch decides.
    """
    state: GatewayState = connection.app.state.gw
    switch = handler.opt.get("public_when")
    if handler.opt.get("public") or (switch and getattr(state.settings, switch)):
        return
    key = presented_key(connection)
    if key is None:
        raise NotAuthorizedException(
            "missing credentials: send the header X-Api-Key: <key> or Authorization: Bearer <key>"
        )
    digest = key_digest(key)
    if not any(hmac.compare_digest(digest, known) for known in state.key_digests):
        raise NotAuthorizedException("invalid API key")


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who is calling, for created_by fields: a short, non-reversible id of the key."""
    key = presented_key(connection)
    return "anonymous" if key is None else f"apikey:{key_digest(key).hex()[:12]}"
