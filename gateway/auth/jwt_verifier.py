"""JWT bearer tokens: signature (HS256 secret, RS256/ES256 public key or JWKS file), exp, nbf, iss, aud.

Verified tokens are cached by their text until they expire, so a client re-sending the same token
pays for one signature check, not one per request (RS256/ES256 checks cost tens of microseconds).
"""

import json
import time
from collections import OrderedDict
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from litestar.exceptions import NotAuthorizedException

from gateway.auth.principal import Principal
from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings
from telemetry_schemas.enums import ApiKeyScope

_CACHE_SIZE = 10_000
_SCOPE_NAMES = {s.value: s for s in ApiKeyScope}


def looks_like_jwt(token: str) -> bool:
    """A compact JWS has three dot-separated parts; API keys have no dots."""
    return token.count(".") == 2


def _scopes(claims: dict[str, Any], default: ApiKeyScope) -> frozenset[ApiKeyScope]:
    # OAuth style: "scope": "read ingest"; also accepted as a list in "scope" or "scp".
    raw = claims.get("scope", claims.get("scp"))
    if raw is None:
        return frozenset({default})
    words = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(_SCOPE_NAMES[w] for w in words if isinstance(w, str) and w in _SCOPE_NAMES)


def _devices(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("devices")
    return frozenset(d for d in raw if isinstance(d, str)) if isinstance(raw, list) else frozenset()


class JwtVerifier:
    """Checks tokens against the configured keys; ``verify`` returns the caller or raises 401."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret.encode() if settings.jwt_secret else None
        self._public: tuple[str, Any] | None = None
        if settings.jwt_public_key_file is not None:
            self._public = _load_public_key(settings.jwt_public_key_file.read_bytes())
        self._jwks: dict[str | None, tuple[str, Any]] = {}
        if settings.jwt_jwks_file is not None:
            self._jwks = _load_jwks(settings.jwt_jwks_file.read_text())
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self._default_scope = ApiKeyScope(settings.jwt_default_scope)
        self._cache: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether any verification key is configured."""
        return bool(self._secret or self._public or self._jwks)

    def _key_for(self, header: dict[str, Any]) -> tuple[str, Any]:
        alg = header.get("alg")
        if alg == "HS256" and self._secret is not None:
            return alg, self._secret
        if self._jwks:
            found = self._jwks.get(header.get("kid")) or (
                next(iter(self._jwks.values())) if len(self._jwks) == 1 else None
            )
            if found is not None and found[0] == alg:
                return found
        if self._public is not None and self._public[0] == alg:
            return self._public
        raise NotAuthorizedException(f"invalid token: no configured key verifies algorithm {alg!r}")

    def verify(self, token: str) -> Principal:
        """The caller the token names, or NotAuthorizedException saying what is wrong with it."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            principal, not_before, expires = cached
            if not_before - self._leeway <= now < expires + self._leeway:
                return principal
            del self._cache[token]
        if not self.enabled:
            raise NotAuthorizedException("invalid token: this gateway accepts no JWTs (no key configured)")
        try:
            alg, key = self._key_for(jwt.get_unverified_header(token))
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthorizedException("invalid token: expired") from None
        except jwt.ImmatureSignatureError:
            raise NotAuthorizedException("invalid token: not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise NotAuthorizedException(f"invalid token: audience is not {self._audience!r}") from None
        except jwt.InvalidIssuerError:
            raise NotAuthorizedException(f"invalid token: issuer is not {self._issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise NotAuthorizedException("invalid token: signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise NotAuthorizedException(f"invalid token: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 256:
            raise NotAuthorizedException("invalid token: sub must be a string of 1-256 characters")
        principal = Principal(
            subject=subject,
            scopes=_scopes(claims, self._default_scope),
            kind="jwt",
            limit_key=f"jwt:{subject}",
            devices=_devices(claims),
        )
        self._remember(token, principal, float(claims.get("nbf", 0)), float(claims["exp"]))
        return principal

    def _remember(self, token: str, principal: Principal, not_before: float, expires: float) -> None:
        self._cache[token] = (principal, not_before, expires)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)


def _algorithm_of(key: Any) -> str:
    if isinstance(key, RSAPublicKey):
        return "RS256"
    if isinstance(key, EllipticCurvePublicKey):
        return "ES256"
    raise ConfigurationError(f"JWT public keys must be RSA (RS256) or EC P-256 (ES256), not {type(key).__name__}")


def _load_public_key(pem: bytes) -> tuple[str, Any]:
    try:
        key = load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigurationError(f"TELEMETRY_JWT_PUBLIC_KEY_FILE is not a PEM public key: {exc}") from None
    return _algorithm_of(key), key


def _load_jwks(text: str) -> dict[str | None, tuple[str, Any]]:
    try:
        keys = jwt.PyJWKSet.from_dict(json.loads(text)).keys
    except (ValueError, jwt.PyJWTError) as exc:
        raise ConfigurationError(f"TELEMETRY_JWT_JWKS_FILE is not a usable JWKS: {exc}") from None
    found: dict[str | None, tuple[str, Any]] = {}
    for jwk in keys:
        alg = jwk.algorithm_name if jwk.algorithm_name in ("RS256", "ES256") else _algorithm_of(jwk.key)
        found[jwk.key_id] = (alg, jwk.key)
    return found
