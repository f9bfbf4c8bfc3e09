"""JwtVerifier with each kind of key: HS256 secret, RS256 PEM public key, ES256 in a JWKS file."""

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar.exceptions import NotAuthorizedException

from gateway.auth.jwt_verifier import JwtVerifier, looks_like_jwt
from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings
from telemetry_schemas.enums import ApiKeyScope
from tests.support.eventually import eventually


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "svc", "exp": int(time.time()) + 60, **extra}


def _pem(private: Any) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_rs256_with_a_pem_public_key(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "pub.pem").write_bytes(_pem(private))
    verifier = JwtVerifier(Settings.from_env({"TELEMETRY_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem")}))
    principal = verifier.verify(jwt.encode(_claims(scope="ingest read", devices=["d1"]), private, algorithm="RS256"))
    assert (principal.subject, principal.scopes, principal.devices) == (
        "svc", frozenset({ApiKeyScope.INGEST, ApiKeyScope.READ}), frozenset({"d1"})
    )  # fmt: skip
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(NotAuthorizedException, match="signature does not verify"):
        verifier.verify(jwt.encode(_claims(), other, algorithm="RS256"))


def test_a_public_key_is_never_used_as_an_hmac_secret(tmp_path: Path) -> None:
    # The classic algorithm confusion: an HS256 token "signed" with the public key's PEM text.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _pem(private)
    (tmp_path / "pub.pem").write_bytes(pem)
    verifier = JwtVerifier(Settings.from_env({"TELEMETRY_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem")}))
    forged = _hs256_with_raw_secret(_claims(), pem)  # PyJWT itself refuses to sign with a PEM as secret
    with pytest.raises(NotAuthorizedException, match="no configured key verifies algorithm 'HS256'"):
        verifier.verify(forged)


def _hs256_with_raw_secret(claims: dict[str, Any], secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_es256_from_a_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, private in (("one", first), ("two", second)):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": keys}))
    verifier = JwtVerifier(Settings.from_env({"TELEMETRY_JWT_JWKS_FILE": str(tmp_path / "jwks.json")}))
    good = jwt.encode(_claims(), second, algorithm="ES256", headers={"kid": "two"})
    assert verifier.verify(good).subject == "svc"
    wrong_kid = jwt.encode(_claims(sub="x"), second, algorithm="ES256", headers={"kid": "one"})
    with pytest.raises(NotAuthorizedException, match="signature does not verify"):
        verifier.verify(wrong_kid)


def test_hs256_default_scope_and_cache_expiry() -> None:
    secret = "s" * 32
    verifier = JwtVerifier(Settings.from_env({"TELEMETRY_JWT_SECRET": secret, "TELEMETRY_JWT_LEEWAY": "0"}))
    token = jwt.encode(_claims(exp=int(time.time()) + 2), secret, algorithm="HS256")
    assert verifier.verify(token).scopes == frozenset({ApiKeyScope.READ})  # no scope claim: the default
    assert token in verifier._cache

    def refused_as_expired() -> bool:
        # Served from the cache until then: the cache must not outlive the token.
        try:
            verifier.verify(token)
        except NotAuthorizedException as exc:
            return exc.detail == "invalid token: expired"
        return False

    eventually(refused_as_expired, timeout=5, what="the cached token expires")


def test_missing_subject_and_bad_key_files(tmp_path: Path) -> None:
    secret = "s" * 32
    verifier = JwtVerifier(Settings.from_env({"TELEMETRY_JWT_SECRET": secret}))
    with pytest.raises(NotAuthorizedException, match='missing the "sub" claim'):
        verifier.verify(jwt.encode({"exp": int(time.time()) + 60}, secret, algorithm="HS256"))
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigurationError, match="not a PEM public key"):
        JwtVerifier(Settings.from_env({"TELEMETRY_JWT_PUBLIC_KEY_FILE": str(tmp_path / "bad.pem")}))


def test_jwt_shape() -> None:
    assert looks_like_jwt("a.b.c")
    assert not looks_like_jwt("tsk_abcdef")
