"""Who may call: every route needs credentials (API key or JWT); the internal-call header only when trusted."""

import asyncio
import re
from collections.abc import Callable, Iterator

import httpx
import msgspec
import nats
import pytest

from gateway.app import create_app
from gateway.auth.authenticator import DELETED_USER, MISSING
from telemetry_core.settings import Settings
from tests.e2e.conftest import point
from tests.support.auth import JWT_AUDIENCE, JWT_ISSUER, bearer, gateway_copy, jwt_env, token
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

_PARAM = re.compile(r"\{(\w+)(:\w+)?\}")


@pytest.fixture(scope="module")
def jwt_gateway(stack: Stack, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway accepting HS256 tokens and trusting X-Internal-Call from loopback."""
    env = jwt_env(TELEMETRY_TRUST_INTERNAL_CALLS="on", TELEMETRY_TRUSTED_NETWORKS="127.0.0.1/32,::1/128")
    with gateway_copy(servers, tmp_path_factory.mktemp("jwt-gateway"), **env) as copy:
        yield copy


def _http_routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every HTTP route the app serves, path parameters filled in."""
    app = create_app(Settings())
    found = []
    for route in app.routes:
        methods = getattr(route, "methods", None)
        if not methods:
            continue  # a WebSocket route: not reachable with plain HTTP
        path = _PARAM.sub(lambda m: f"x_{m.group(1)}", route.path)
        found += [(m, path) for m in sorted(methods) if m not in ("OPTIONS", "HEAD")]
    return found


def _public_paths() -> set[str]:
    """Paths of the HTTP routes that opt out of the guard (``opt={"public": True}``)."""
    app = create_app(Settings())
    return {
        _PARAM.sub(lambda m: f"x_{m.group(1)}", route.path)
        for route in app.routes
        if getattr(route, "methods", None) and any(h.opt.get("public") for h in route.route_handlers)
    }


ROUTES = sorted(_http_routes())  # sorted: the ids must not depend on set order between collections
# /health, and the web console's page and static files (gateway/routes/console.py): nothing else.
PUBLIC = {"/health", "/", "/console/x_name"}


def test_only_health_and_the_console_page_are_public() -> None:
    assert _public_paths() == PUBLIC


def test_the_route_list_is_complete() -> None:
    # The list the next test walks comes from the app itself; check it is not trivially short.
    paths = {p for _, p in ROUTES}
    assert "/api/v1/telemetry/devices/x_device_id/telemetry/batch" in paths
    assert "/api/v1/telemetry/alerts/rules/x_rule_id/enable" in paths
    assert len(ROUTES) >= 25


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_but_health_answers_401_without_credentials(stack: Stack, method: str, path: str) -> None:
    r = httpx.request(method, f"{stack.url}{path}", json={}, timeout=10)
    if path in PUBLIC:
        assert r.status_code != 401
    else:
        assert (r.status_code, r.json()["detail"]) == (401, MISSING)
        assert r.headers["www-authenticate"] == "Bearer"


def test_unknown_routes_answer_401_before_404(stack: Stack) -> None:
    for method, path in [("GET", "/api/v1/telemetry/nope"), ("GET", "/admin"), ("DELETE", "/api/v1/telemetry/bulk")]:
        r = httpx.request(method, f"{stack.url}{path}")
        assert (r.status_code, r.json()["detail"]) == (401, MISSING), (method, path)
        r = httpx.request(method, f"{stack.url}{path}", headers={"X-Api-Key": "wrong"})
        assert (r.status_code, r.json()["detail"]) == (401, "invalid API key"), (method, path)
    # With credentials the truth: no such route, or no such method.
    assert httpx.get(f"{stack.url}/api/v1/telemetry/nope", headers=stack.headers).status_code == 404
    assert httpx.delete(f"{stack.url}/api/v1/telemetry/bulk", headers=stack.headers).status_code == 405
    assert httpx.get(f"{stack.url}/health/nope").status_code == 404  # /health* stays open


def test_a_jwt_subject_becomes_created_by(jwt_gateway: Stack) -> None:
    name = unique("m")
    r = httpx.post(f"{jwt_gateway.url}/api/v1/telemetry/metrics", headers=bearer(token("alice", scope="admin")),
                   json={"name": name, "data_type": "numeric"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "alice"


def test_a_non_jwt_bearer_is_still_an_api_key(jwt_gateway: Stack) -> None:
    url = f"{jwt_gateway.url}/api/v1/telemetry/devices/{unique('dev')}/telemetry"
    assert httpx.post(url, json=point(), headers=bearer(jwt_gateway.api_key)).status_code == 200


# Tokens are minted inside the test, not at collection: a suite slower than their 300 s lifetime (seen under
# load) turned "wrong audience" into "expired" when they were made while pytest collected.
@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (lambda: token(secret="another-secret-0123456789abcdef-0123456"), "invalid token: signature does not verify"),
        (lambda: token(ttl_s=-3600), "invalid token: expired"),
        (lambda: token(aud="someone-else"), f"invalid token: audience is not {JWT_AUDIENCE!r}"),
        (lambda: token(iss="https://evil.test"), f"invalid token: issuer is not {JWT_ISSUER!r}"),
        (lambda: token(nbf=4_000_000_000), "invalid token: not valid yet (nbf)"),
        (lambda: token(exp=None), 'invalid token: Token is missing the "exp" claim'),
        (lambda: token(scope="admin")[:-4] + "AAAA", "invalid token: signature does not verify"),
    ],
    ids=["wrong-signature", "expired", "wrong-audience", "wrong-issuer", "not-yet-valid", "no-exp", "tampered"],
)
def test_bad_tokens_are_401(jwt_gateway: Stack, bad: Callable[[], str], detail: str) -> None:
    r = httpx.get(f"{jwt_gateway.url}/api/v1/telemetry/metrics", headers=bearer(bad()))
    assert (r.status_code, r.json()["detail"]) == (401, detail)


def test_a_good_token_passes_where_bad_ones_fail(jwt_gateway: Stack) -> None:
    # The control for the test above: the same request with a valid token.
    r = httpx.get(f"{jwt_gateway.url}/api/v1/telemetry/metrics", headers=bearer(token()))
    assert r.status_code == 200, r.text


def test_a_deleted_users_tokens_are_refused_on_every_path(jwt_gateway: Stack, servers: Servers) -> None:
    gone, kept = unique("gone-user"), unique("kept-user")
    device = unique("dev")
    base = f"{jwt_gateway.url}/api/v1/telemetry"
    requests = [  # the Litestar route, the fast read path and the fast single-point path
        ("GET", f"{base}/metrics", None, 200),
        ("GET", f"{base}/devices/{device}/metrics/cpu/latest", None, 404),
        ("POST", f"{base}/devices/{device}/telemetry", point(), 200),
    ]

    def answers(user: str) -> list[tuple[int, str | None]]:
        headers = bearer(token(user, scope="admin"))
        out = []
        for method, url, body, _ in requests:
            r = httpx.request(method, url, headers=headers, json=body)
            out.append((r.status_code, r.json().get("detail") if r.status_code == 401 else None))
        return out

    before = [(status, None) for *_, status in requests]
    assert answers(gone) == before

    # The account service deletes the user (FR-020): a platform event on its subject.
    async def publish() -> None:
        nc = await nats.connect(servers.nats_url)
        try:
            await nc.jetstream().publish("account_service.user.deleted", msgspec.json.encode({"user_id": gone}))
        finally:
            await nc.close()

    asyncio.run(publish())
    refused = [(401, DELETED_USER)] * len(requests)
    eventually(lambda: answers(gone) == refused, timeout=10, what="the deleted user's token refused everywhere")
    assert answers(kept) == before  # nobody else is affected


def test_a_gateway_without_jwt_keys_refuses_tokens(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/api/v1/telemetry/metrics", headers=bearer(token()))
    assert (r.status_code, r.json()["detail"]) == (
        401, "invalid token: this gateway accepts no JWTs (no key configured)"
    )  # fmt: skip


def test_token_scopes_are_enforced(jwt_gateway: Stack) -> None:
    rules = f"{jwt_gateway.url}/api/v1/telemetry/alerts/rules"
    r = httpx.get(rules, headers=bearer(token(scope="read")))
    assert r.status_code == 200
    r = httpx.post(rules, headers=bearer(token(scope="read")), json={})
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "forbidden: POST /api/v1/telemetry/alerts/rules needs scope admin; these credentials have read"
    )


def test_the_internal_header_is_ignored_unless_trusted(stack: Stack, jwt_gateway: Stack) -> None:
    internal = {"X-Internal-Call": "true"}
    # Off by default: the header alone is no credential.
    r = httpx.get(f"{stack.url}/api/v1/telemetry/metrics", headers=internal)
    assert (r.status_code, r.json()["detail"]) == (401, MISSING)
    # Trusted from loopback on the jwt gateway: the call is the "internal" principal.
    name = unique("m")
    r = httpx.post(f"{jwt_gateway.url}/api/v1/telemetry/metrics", headers=internal,
                   json={"name": name, "data_type": "numeric"})  # fmt: skip
    assert (r.status_code, r.json()["created_by"]) == (201, "internal")
    # Any other value of the header is not a claim to be internal.
    r = httpx.get(f"{jwt_gateway.url}/api/v1/telemetry/metrics", headers={"X-Internal-Call": "yes please"})
    assert r.status_code == 401


def test_the_internal_header_needs_a_trusted_network(servers: Servers, stack: Stack,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    env = {"TELEMETRY_TRUST_INTERNAL_CALLS": "on", "TELEMETRY_TRUSTED_NETWORKS": "10.0.0.0/8"}
    with gateway_copy(servers, tmp_path_factory.mktemp("untrusted"), **env) as copy:
        r = httpx.get(f"{copy.url}/api/v1/telemetry/metrics", headers={"X-Internal-Call": "true"})
        assert (r.status_code, r.json()["detail"]) == (401, MISSING)
        assert httpx.get(f"{copy.url}/api/v1/telemetry/metrics", headers=copy.headers).status_code == 200
