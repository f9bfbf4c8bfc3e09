"""Helpers for authentication tests: signed tokens, the `telemetry apikey` CLI, extra gateway copies."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt

from tests.support.servers import Servers
from tests.support.stack import Stack

JWT_SECRET = "test-jwt-secret-0123456789abcdef-0123"
JWT_ISSUER = "https://issuer.test"
JWT_AUDIENCE = "telemetry-test"


def token(sub: str = "alice", *, secret: str = JWT_SECRET, ttl_s: float = 300, **claims: Any) -> str:
    """An HS256 token the test gateways accept unless a claim says otherwise."""
    now = int(time.time())
    body = {"sub": sub, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + int(ttl_s), **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def jwt_env(**extra: str) -> dict[str, str]:
    return {
        "TELEMETRY_JWT_SECRET": JWT_SECRET,
        "TELEMETRY_JWT_ISSUER": JWT_ISSUER,
        "TELEMETRY_JWT_AUDIENCE": JWT_AUDIENCE,
        **extra,
    }


def cli(servers: Servers, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `telemetry <args>` against the test servers; raises with its output when it fails."""
    env = {**os.environ, "NATS_URL": servers.nats_url, "DATABASE_URL": servers.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "telemetry_core.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"telemetry {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}")
    return done


def create_key(servers: Servers, name: str, scope: str, devices: str | None = None) -> tuple[str, str]:
    """`telemetry apikey create`; returns (key_id, key) as printed."""
    args = ["apikey", "create", "--name", name, "--scope", scope]
    if devices is not None:
        args += ["--devices", devices]
    out = cli(servers, *args).stdout
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    return fields["key_id"], fields["key"]


@contextmanager
def gateway_copy(servers: Servers, log_dir: Path, **env: str) -> Iterator[Stack]:
    """Another gateway on the same servers (the session stack's workers serve it), with ``env`` added."""
    copy = Stack(servers, log_dir, extra_env=env)
    copy.start_all(("gateway",))
    try:
        yield copy
    finally:
        copy.stop_all()
