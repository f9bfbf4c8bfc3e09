"""Credentials → Principal, for HTTP requests and WebSocket connections alike.

Accepted, in this order: ``X-Api-Key: <key>``; ``Authorization: Bearer <token>`` (a JWT when it has
the JWT shape, otherwise an API key); ``Authorization: Token <key>`` (how InfluxDB 2.x clients and Telegraf
send a token); on the line-protocol write paths only, InfluxDB 1.x credentials with the key as the password
(``Authorization: Basic`` or ``?u=&p=``); with no credentials, ``X-Internal-Call: true`` when the operator
trusts internal calls and the peer is in a trusted network. An API key is either a bootstrap key
(TELEMETRY_API_KEYS, admin) or one made by `telemetry apikey create` (from the key cache).
"""

import base64
import binascii
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException

from gateway.auth.deleted_users import DeletedUsers
from gateway.auth.jwt_verifier import JwtVerifier, looks_like_jwt
from gateway.auth.key_cache import ApiKeyCache
from gateway.auth.principal import Principal
from gateway.auth.rate_limit import TokenBuckets
from gateway.auth.remote_verifier import RemoteVerifier
from gateway.auth.trusted_networks import InternalCalls
from telemetry_core.api_key_material import key_digest
from telemetry_core.settings import Settings
from telemetry_schemas.enums import ApiKeyScope

DELETED_USER = "invalid token: its user (sub) was deleted by the account service"
MISSING = "missing credentials: send the header X-Api-Key: <key> or Authorization: Bearer <key or JWT>"
_ADMIN = frozenset({ApiKeyScope.ADMIN})
INTERNAL = Principal(subject="internal", scopes=_ADMIN, kind="internal", limit_key="internal")


# InfluxDB 1.x clients can only send a user and password: there, the password is the API key. Only on these
# paths, so that no other route invites keys in URLs (which end up in proxy logs).
INFLUX_WRITE_PATHS = frozenset({"/write", "/api/v2/write"})


def _basic_password(token: str) -> str | None:
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2].strip() or None


def _credential_headers(scope: Any) -> tuple[str | None, str]:
    """(X-Api-Key, Authorization) straight from the ASGI scope, first of each (as ``Headers.get`` answers).

    Not ``connection.headers``: that parses every header into a multidict on each call, a measured
    tenth of the guard's cost on a request whose credentials are two of its headers.
    """
    key: str | None = None
    authorization: str | None = None
    for name, value in scope.get("headers") or ():
        if len(name) == 9 and key is None and name.lower() == b"x-api-key":
            key = value.decode("latin-1")
        elif len(name) == 13 and authorization is None and name.lower() == b"authorization":
            authorization = value.decode("latin-1")
    return key, authorization or ""


def presented_credentials(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, str] | None:
    """("key", value) or ("bearer", value) from the request's credentials (module docstring), or None."""
    key, authorization = _credential_headers(connection.scope)
    if key and key.strip():
        return "key", key.strip()
    scheme, _, token = authorization.partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme == "bearer" and token:
        return "bearer", token
    if scheme == "token" and token:
        return "key", token
    if connection.scope.get("path") in INFLUX_WRITE_PATHS:
        password = _basic_password(token) if scheme == "basic" and token else connection.query_params.get("p")
        if password and password.strip():
            return "key", password.strip()
    return None


class Authenticator:
    """Everything the gateway needs to say who is calling (held on GatewayState as ``auth``)."""

    def __init__(
        self,
        settings: Settings,
        keys: ApiKeyCache,
        remote: RemoteVerifier | None = None,
        deleted_users: DeletedUsers | None = None,
    ) -> None:
        """``deleted_users``: users whose tokens are refused (user.deleted); None refuses none (benchmarks)."""
        # A bootstrap key's name is a short non-reversible id of it (as before keys were data).
        self._bootstrap = tuple(
            (d, Principal(subject=f"apikey:{d.hex()[:12]}", scopes=_ADMIN, kind="bootstrap", limit_key=d.hex()[:12]))
            for d in (key_digest(k) for k in settings.api_keys)
        )
        self.keys = keys
        self.jwt = JwtVerifier(settings)
        self.internal = InternalCalls(settings)
        self.requests = TokenBuckets(settings.rate_limit_requests, settings.rate_limit_burst_s, "requests")
        self.points = TokenBuckets(settings.rate_limit_points, settings.rate_limit_burst_s, "points")
        self.remote = remote
        self.deleted_users = deleted_users

    def _person(self, principal: Principal) -> Principal:
        """A token's user, unless the account service deleted them (401: the token outlived its user)."""
        if self.deleted_users is not None and self.deleted_users.deleted(principal.subject):
            raise NotAuthorizedException(DELETED_USER)
        return principal

    def _api_key(self, key: str) -> Principal:
        digest = key_digest(key)
        for known, bootstrap in self._bootstrap:
            if hmac.compare_digest(digest, known):
                return bootstrap
        found = self.keys.get(digest)
        if found is None:
            raise NotAuthorizedException("invalid API key")
        return found

    def identify(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        """The caller, or NotAuthorizedException (401) saying what is missing or wrong."""
        presented = presented_credentials(connection)
        if presented is None:
            client = connection.client.host if connection.client else None
            if self.internal.trusted(connection.headers.get("x-internal-call"), client):
                return INTERNAL
            raise NotAuthorizedException(MISSING)
        kind, value = presented
        if kind == "bearer" and looks_like_jwt(value):
            return self._person(self.jwt.verify(value))
        return self._api_key(value)

    async def identify_anywhere(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        """``identify``, then, for credentials refused locally, the external auth service when configured."""
        try:
            return self.identify(connection)
        except NotAuthorizedException:
            presented = presented_credentials(connection)
            if self.remote is None or presented is None:
                raise
            value = presented[1]
            vouched = await self.remote.verify("token" if looks_like_jwt(value) else "api_key", value)
            if vouched is None:
                raise
            return self._person(vouched)


def authenticator_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Authenticator:
    """The gateway's authenticator (put on app.state.gw by the lifespan)."""
    auth: Authenticator = connection.app.state.gw.auth
    return auth


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Authenticate any connection (HTTP request or WebSocket); raise NotAuthorizedException (401).

    Only says who the caller is: scopes, device limits and rate limits are the guard's
    (``gateway.auth.guard``). Credentials this gateway does not know are put to the external auth
    service when one is configured (``remote_verifier.py``).
    """
    return await authenticator_of(connection).identify_anywhere(connection)
