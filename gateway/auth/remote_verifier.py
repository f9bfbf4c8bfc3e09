"""An external auth service, asked about credentials this gateway cannot verify itself.

Contract: ``POST <TELEMETRY_AUTH_SERVICE_URL>`` with ``{"token": "<jwt>"}`` or ``{"api_key": "<key>"}``;
a 200 with ``{"valid": true, "subject": ..., "scope": "read ingest" | [...], "devices": [...]}``
accepts (``user_id`` or ``sub`` are read when ``subject`` is absent); ``valid: false``, 401 or 403
refuses. Answers are cached (acceptances for TELEMETRY_AUTH_SERVICE_CACHE seconds, refusals for at
most 5) by the credential's digest, so the service sees each credential about once a minute.

When the service cannot be reached, times out or fails (5xx), nothing is cached and the caller
keeps the local answer (the PRD's "graceful fallback"): credentials the gateway knows keep working
and unknown ones get the local 401, after at most TELEMETRY_AUTH_SERVICE_TIMEOUT.
"""

import hashlib
import time
from typing import Any

import httpx
import structlog

from gateway.auth.principal import Principal
from telemetry_core.settings import Settings
from telemetry_schemas.enums import ApiKeyScope

_REFUSAL_TTL_S = 5.0
_CACHE_MAX = 10_000
_SCOPES = {s.value: s for s in ApiKeyScope}


def _principal(body: dict[str, Any], default: ApiKeyScope) -> Principal | None:
    subject = body.get("subject") or body.get("user_id") or body.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 256:
        return None
    raw = body.get("scope", body.get("scopes"))
    words = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else [default.value]
    scopes = frozenset(_SCOPES[w] for w in words if isinstance(w, str) and w in _SCOPES)
    devices = body.get("devices")
    allowed = frozenset(d for d in devices if isinstance(d, str)) if isinstance(devices, list) else frozenset()
    return Principal(subject=subject, scopes=scopes, kind="remote", limit_key=f"remote:{subject}", devices=allowed)


class RemoteVerifier:
    """Asks the auth service, with a cache; ``verify`` returns None for "no" and for "could not ask"."""

    def __init__(self, settings: Settings, log: structlog.stdlib.BoundLogger) -> None:
        assert settings.auth_service_url is not None
        self._url = settings.auth_service_url
        self._ttl = settings.auth_service_cache_s
        self._default = ApiKeyScope(settings.jwt_default_scope)
        self._client = httpx.AsyncClient(timeout=settings.auth_service_timeout_s)
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}
        self._log = log
        self.unreachable = 0

    async def verify(self, kind: str, credential: str) -> Principal | None:
        """The caller the service vouches for, or None (refused, or the service unavailable)."""
        digest = hashlib.sha256(f"{kind}:{credential}".encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            response = await self._client.post(self._url, json={kind: credential})
        except httpx.HTTPError as exc:
            self.unreachable += 1
            self._log.warning("auth_service_unreachable", error=repr(exc), fallback="local")
            return None
        if response.status_code >= 500:
            self.unreachable += 1
            self._log.warning("auth_service_failed", status=response.status_code, fallback="local")
            return None
        principal = None
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = {}
            if isinstance(body, dict) and body.get("valid") is True:
                principal = _principal(body, self._default)
        ttl = self._ttl if principal is not None else min(self._ttl, _REFUSAL_TTL_S)
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[digest] = (principal, now + ttl)
        return principal

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
