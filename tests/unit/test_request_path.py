"""The per-request path's shortcuts keep the answers of what they replaced (gateway request cost, issue 13)."""

import json
from typing import Any

import pytest
from litestar import WebSocket, websocket
from litestar.datastructures import Headers

from gateway.app import create_app, require_socket_guards
from gateway.auth.authenticator import _credential_headers
from gateway.auth.guard import require_credentials
from gateway.routes import stream
from telemetry_core.pg_pool import json_loads
from telemetry_core.settings import Settings


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-api-key", b"k1"), (b"authorization", b"Bearer t")],
        [(b"X-Api-Key", b"k1"), (b"X-API-KEY", b"k2"), (b"Authorization", b"Token a"), (b"authorization", b"b")],
        [(b"host", b"h"), (b"authorization", b"Basic dTpw")],
        [(b"x-api-keys", b"no"), (b"authorizations", b"no")],
        [(b"x-api-key", "caf\xe9".encode("latin-1"))],
        [],
    ],
)
def test_credentials_read_from_the_scope_are_what_the_headers_object_answers(
    headers: list[tuple[bytes, bytes]],
) -> None:
    parsed = Headers(headers)
    assert _credential_headers({"headers": headers}) == (parsed.get("x-api-key"), parsed.get("authorization", ""))


def _unguarded_socket() -> Any:
    @websocket("/ws/unguarded")
    async def unguarded(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.close()

    return unguarded


def test_a_websocket_route_without_the_guard_stops_the_app_from_starting() -> None:
    # HTTP routes are guarded from before_request, which never runs for a socket: a socket must carry the guard.
    with pytest.raises(RuntimeError, match="ws/unguarded"):
        require_socket_guards([_unguarded_socket()])
    require_socket_guards(list(stream.ROUTES))  # the real socket route carries it
    app = create_app(Settings.from_env({}))
    sockets = [h for r in app.routes for h in getattr(r, "route_handlers", [getattr(r, "route_handler", None)])
               if type(h).__name__ == "WebsocketRouteHandler"]  # fmt: skip
    assert sockets and all(require_credentials in (h.guards or ()) for h in sockets)


def test_http_routes_carry_no_litestar_guard_but_the_app_hook_runs_it() -> None:
    app = create_app(Settings.from_env({}))
    http = [h for path_map in app.route_handler_method_map.values() for h in path_map.values()
            if type(h).__name__ == "HTTPRouteHandler"]  # fmt: skip
    assert http
    assert not [h.paths for h in http if h.resolve_guards()]  # no copy() of the handler per request
    assert {h.resolve_before_request().__name__ for h in http if h.resolve_before_request()} == {  # type: ignore[union-attr]
        "before_every_request"
    }


def test_json_columns_decode_like_the_standard_library() -> None:
    for data in (b'{"a": [1, 2.5, "x"], "b": null}', b"{}", "[true]", memoryview(b'{"n": 12345678901234567890}')):
        assert json_loads(data) == json.loads(bytes(data) if isinstance(data, memoryview) else data)
    assert json_loads(b"[1e400]") == [float("inf")]  # beyond msgspec's floats: the standard library answers
