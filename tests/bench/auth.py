"""Authentication cost: ingest with a JWT and a database API key against a bootstrap key, and revocation time.

Rounds interleave the three credentials in rotating order, so load from elsewhere on the machine
falls on all of them alike; each credential's figure is its median over the rounds, reported as a
ratio to the bootstrap key's (target ≥ 0.95). Revocation propagation is the time from the
apikey.revoked event's publish acknowledgement to the gateway's first 401 for that key.

Part of `make bench` (``run_auth``); alone: ``python -m tests.bench.auth`` (own servers and stack).
"""

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import nats
import structlog
import uvloop
from litestar import Request

from gateway.auth.authenticator import Authenticator
from gateway.auth.key_cache import ApiKeyCache
from telemetry_core import api_key_admin
from telemetry_core.api_key_material import key_digest, new_key
from telemetry_core.embedded import start_nats, start_postgres
from telemetry_core.headers import EXPECTED_LAST_SUBJECT_SEQ
from telemetry_core.migrate import migrate
from telemetry_core.settings import Settings
from telemetry_core.topology import EVENTS_STREAM, api_key_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.enums import ApiKeyScope
from telemetry_schemas.events import ApiKeyCreated, ApiKeyRevoked
from tests.bench.client import make_client
from tests.bench.e2e import build_batches, post_batches
from tests.bench.latency import run_latency
from tests.bench.scratch import scratch_dir
from tests.bench.stats import percentile
from tests.support.servers import Servers
from tests.support.stack import Stack

JWT_SECRET = "bench-jwt-secret-0123456789abcdef-0123"
# What the bench stack's gateway needs to accept the benchmark's tokens.
GATEWAY_ENV = {"TELEMETRY_JWT_SECRET": JWT_SECRET}


@dataclass
class AuthResult:
    rounds: int
    batch_points: int
    latency_requests: int
    # credential → [acked points, seconds] over all its batch segments, and all its single-point latencies
    batches: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    revocations: list[float] = field(default_factory=list)
    # credential → microseconds one authentication costs in process (no HTTP, no noise from the machine)
    identify_us: dict[str, float] = field(default_factory=dict)

    def rate(self, kind: str) -> float:
        points, seconds = self.batches[kind]
        return points / seconds

    def p99(self, kind: str) -> float:
        return percentile(self.latencies[kind], 99)

    def lines(self) -> list[str]:
        base_rate, base_p99 = self.rate("bootstrap"), self.p99("bootstrap")
        out = [
            f"auth: {self.rounds} rounds, each credential in turn (rotating order): {self.batch_points:,} points "
            f"in batches of 500, then {self.latency_requests} single points; pooled per credential"
        ]
        for kind in self.batches:
            out.append(
                f"  {kind:>9}: batches {self.rate(kind):,.0f} points/s ({self.rate(kind) / base_rate:.3f} of bootstrap), "
                f"single-point p99 {self.p99(kind) * 1000:.1f} ms ({base_p99 / self.p99(kind):.3f} of bootstrap's rate)"
            )
        if self.identify_us:
            costs = ", ".join(f"{k} {v:.1f} µs" for k, v in self.identify_us.items())
            out.append(f"  one authentication in process: {costs}")
        if self.revocations:
            out.append(
                f"  revocation → 401 on the gateway: median {statistics.median(self.revocations) * 1000:.1f} ms, "
                f"max {max(self.revocations) * 1000:.1f} ms over {len(self.revocations)} keys"
            )
        return out


def _token(sub: str = "bench-device") -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "scope": "ingest", "iat": now, "exp": now + 3600}, JWT_SECRET, "HS256")


def _credentials(stack: Stack, settings: Settings) -> dict[str, dict[str, str]]:
    _, db_key = api_key_admin.create(settings, "bench", ApiKeyScope.INGEST, [])
    return {
        "bootstrap": {"X-Api-Key": stack.api_key},
        "apikey-db": {"X-Api-Key": db_key},
        "jwt": {"Authorization": f"Bearer {_token()}"},
    }


async def _revocation_time(stack: Stack, settings: Settings, nc_url: str) -> float:
    key_id, key = await asyncio.to_thread(api_key_admin.create, settings, "bench-revoke", ApiKeyScope.READ, [])
    url = f"{stack.url}/api/v1/telemetry/metrics"
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(url, headers={"X-Api-Key": key})).status_code == 200
        nc = await nats.connect(nc_url)
        try:
            js = nc.jetstream()
            last = await js.get_last_msg(EVENTS_STREAM, api_key_subject(key_id))
            event = ApiKeyRevoked(key_id=key_id, at=datetime.now(UTC), by="bench")
            headers = {EXPECTED_LAST_SUBJECT_SEQ: str(last.seq)}
            await js.publish(api_key_subject(key_id), json_encoder.encode(event), headers=headers)
            acked = time.perf_counter()
            deadline = acked + 5
            while time.perf_counter() < deadline:
                if (await http.get(url, headers={"X-Api-Key": key})).status_code == 401:
                    return time.perf_counter() - acked
            raise RuntimeError("a revoked key was still accepted after 5 s")
        finally:
            await nc.close()


def identify_costs(calls: int = 20_000) -> dict[str, float]:
    """Microseconds per Authenticator.identify() for each kind of credential (JWT: cached and first sight)."""
    bootstrap = "bench-bootstrap-key-0123456789"
    settings = Settings(api_keys=(bootstrap,), jwt_secret=JWT_SECRET)
    keys = ApiKeyCache(None, structlog.get_logger())  # type: ignore[arg-type]  # fed by hand, never started
    key_id, db_key = new_key()
    keys._apply(ApiKeyCreated(key_id=key_id, name="b", scope=ApiKeyScope.INGEST, digest=key_digest(db_key).hex(),
                              created_at=datetime.now(UTC), created_by="bench"), 1)  # fmt: skip
    auth = Authenticator(settings, keys)

    def request(name: bytes, value: str) -> Request[Any, Any, Any]:
        return Request({"type": "http", "headers": [(name, value.encode())], "client": ("127.0.0.1", 1)})  # type: ignore[typeddict-item]

    token = _token()
    cases = {
        "bootstrap": (b"x-api-key", bootstrap),
        "apikey-db": (b"x-api-key", db_key),
        "jwt": (b"authorization", f"Bearer {token}"),
    }
    out = {}
    for kind, (name, value) in cases.items():
        t0 = time.perf_counter()
        for _ in range(calls):
            auth.identify(request(name, value))  # a fresh request each time: headers parsed as for real
        out[kind] = (time.perf_counter() - t0) / calls * 1e6
    fresh = [_token(sub=f"s{i}") for i in range(2000)]
    t0 = time.perf_counter()
    for t in fresh:
        auth.identify(request(b"authorization", f"Bearer {t}"))
    out["jwt-first-sight"] = (time.perf_counter() - t0) / len(fresh) * 1e6
    return out


async def run_auth(stack: Stack, servers: Servers, *, rounds: int = 15, batch_points: int = 5_000,
                   latency_requests: int = 120, concurrency: int = 4, revocations: int = 10) -> AuthResult:  # fmt: skip
    """The auth phase against a running stack whose gateway has GATEWAY_ENV.

    Short segments, finely interleaved: the machine's other load (shared cores) falls on every
    credential alike instead of on whichever happened to run during a busy spell.
    """
    settings = Settings.from_env({"NATS_URL": servers.nats_url, "DATABASE_URL": servers.database_url})
    creds = await asyncio.to_thread(_credentials, stack, settings)
    result = AuthResult(rounds, batch_points, latency_requests)
    kinds = list(creds)
    clients = {kind: make_client("raw", stack.url, headers, concurrency) for kind, headers in creds.items()}
    try:
        for r in range(-1, rounds):  # round -1 warms every client's connections up and is not counted
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for kind in order:
                client = clients[kind]
                batches = build_batches(f"bench-auth-{kind}-{r}", batch_points, 500, concurrency)
                t0 = time.perf_counter()
                acked = await post_batches(client, batches, concurrency)
                seconds = time.perf_counter() - t0
                lat = await run_latency(client, requests=latency_requests, concurrency=concurrency, warmup=0)
                if r >= 0:
                    total = result.batches.setdefault(kind, [0.0, 0.0])
                    total[0] += acked
                    total[1] += seconds
                    result.latencies.setdefault(kind, []).extend(lat.latencies)
    finally:
        for client in clients.values():
            await client.aclose()
    result.identify_us = identify_costs()
    for _ in range(revocations):
        result.revocations.append(await _revocation_time(stack, settings, servers.nats_url))
    return result


def main() -> None:
    """Alone: embedded servers and a stack in a temp dir, the auth phase, the lines on stdout."""
    root = scratch_dir("telemetry-bench-auth-")
    nats_server = start_nats(root / "nats")
    postgres = start_postgres(root / "postgres")
    stack: Stack | None = None
    try:
        migrate(postgres.url)
        servers = Servers(nats_server, postgres)
        stack = Stack(servers, root / "logs", extra_env=GATEWAY_ENV, suite_settings=False)
        stack.start_all()
        rounds = int(os.environ.get("BENCH_AUTH_ROUNDS", "15"))
        result = uvloop.run(run_auth(stack, servers, rounds=rounds))
        print("\n".join(result.lines()))
    except BaseException:
        if stack is not None:
            sys.stderr.write(stack.log_tail("gateway"))
        raise
    finally:
        if stack is not None:
            stack.stop_all()
        postgres.stop()
        nats_server.stop()


if __name__ == "__main__":
    main()
