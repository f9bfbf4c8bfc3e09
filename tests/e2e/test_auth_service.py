"""The external auth service: asked about unknown credentials, answers cached, local answer when it is down."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.support.auth import gateway_copy
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

VOUCHED = "remote-key-known-to-the-auth-service"


class AuthService(ThreadingHTTPServer):
    """A stand-in for the auth service over real HTTP: vouches for one key, counts what it is asked."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.asked: list[dict[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    server: AuthService

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.asked.append(body)
        if body.get("api_key") == VOUCHED:
            status, answer = 200, {"valid": True, "user_id": "bob", "scope": "admin"}
        else:
            status, answer = 401, {"valid": False}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def auth_service() -> Iterator[AuthService]:
    service = AuthService()
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    yield service
    service.shutdown()
    service.server_close()


def test_the_auth_service_vouches_is_cached_and_falls_back(
    stack: Stack, servers: Servers, auth_service: AuthService, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = f"http://127.0.0.1:{auth_service.server_address[1]}/verify"
    env = {"TELEMETRY_AUTH_SERVICE_URL": url, "TELEMETRY_AUTH_SERVICE_TIMEOUT": "0.5"}
    with gateway_copy(servers, tmp_path_factory.mktemp("remote-auth"), **env) as gw:
        metrics = f"{gw.url}/api/v1/telemetry/metrics"
        r = httpx.post(metrics, headers={"X-Api-Key": VOUCHED}, json={"name": unique("m"), "data_type": "numeric"})
        assert (r.status_code, r.json().get("created_by")) == (201, "bob"), r.text
        assert httpx.get(metrics, headers={"Authorization": f"Bearer {VOUCHED}"}).status_code == 200
        assert auth_service.asked == [{"api_key": VOUCHED}]  # the second request came from the cache
        r = httpx.get(metrics, headers={"X-Api-Key": "nobody-knows-this-key"})
        assert (r.status_code, r.json()["detail"]) == (401, "invalid API key")
        assert auth_service.asked[-1] == {"api_key": "nobody-knows-this-key"}
        # Known locally: never asked about.
        asked = len(auth_service.asked)
        assert httpx.get(metrics, headers=gw.headers).status_code == 200
        assert len(auth_service.asked) == asked

        auth_service.shutdown()
        auth_service.server_close()
        # Unreachable: local keys and cached answers still work; unknown keys get the local 401.
        assert httpx.get(metrics, headers=gw.headers).status_code == 200
        assert httpx.get(metrics, headers={"X-Api-Key": VOUCHED}).status_code == 200
        r = httpx.get(metrics, headers={"X-Api-Key": "another-unknown-key"})
        assert (r.status_code, r.json()["detail"]) == (401, "invalid API key")
        assert '"auth_service_unreachable"' in gw.log_tail("gateway", 200)
