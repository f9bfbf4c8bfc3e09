"""What route handlers receive by name (Litestar dependency injection), and small request helpers."""

import re
import uuid
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from gateway.auth.guard import principal_of
from gateway.commands.aggregate import CommandContext
from gateway.errors import bad_request
from gateway.request_log import traced
from gateway.state import GatewayState
from telemetry_core.headers import REQUEST_ID
from telemetry_schemas.fields import SUBJECT_SAFE

_SAFE = re.compile(SUBJECT_SAFE)


def request_id(request: Request[Any, Any, Any]) -> str:
    """The caller's X-Request-Id (carried into command headers and worker logs), or a new one."""
    given = request.headers.get(REQUEST_ID.lower())
    return given[:64] if given else uuid.uuid4().hex


def traced_request_id(request: Request[Any, Any, Any]) -> str | None:
    """The request id a POINTS message carries: the client's own (it asked to be traced), else None.

    Every message carrying an id makes each worker write a ``batch_handled`` line naming it (the projections one
    per notice batch, with every id of the transaction): for ids nobody asked to follow that was ~6 % of the
    whole system's CPU per single-point request (docs/benchmarks.md, nineteenth session).
    """
    return request_id(request) if traced(request.scope) else None


def checked_name(value: str, what: str) -> str:
    """Validate a device id or metric name from the path: subject-safe, 1-128 characters."""
    if not 1 <= len(value) <= 128 or not _SAFE.match(value):
        raise bad_request(f"{what} {value!r} is invalid: use 1-128 characters from A-Z a-z 0-9 _ - :")
    return value


def _ctx(request: Request[Any, Any, Any]) -> CommandContext:
    return CommandContext(principal=principal_of(request), request_id=request_id(request))


# What each parameter name gets from the gateway's state (put on app.state.gw by the lifespan).
_FROM_STATE: dict[str, Callable[[GatewayState], Any]] = {
    "gw": lambda gw: gw,
    # Handlers that name ``pool`` only read: they get the replica's pool when DATABASE_READ_URL is set (a write
    # there fails: a standby is read-only). The gateway writes nothing to PostgreSQL: commands go to EVENTS.
    "pool": lambda gw: gw.read_pool,
    "settings": lambda gw: gw.settings,
    "metric_commands": lambda gw: gw.commands.metrics,
    "rule_commands": lambda gw: gw.commands.rules,
    "alert_commands": lambda gw: gw.commands.alerts,
    "off_loop": lambda gw: gw.off_loop,
    "live": lambda gw: gw.live,
    "latest_reads": lambda gw: gw.latest_reads,
}


def _from_state(state: Callable[[], State], pick: Callable[[GatewayState], Any]) -> Callable[[], Any]:
    # No parameters: Litestar validates a provider's parameters on every request (a msgspec conversion per
    # provider, two for ``pool`` when it took ``gw`` which took ``state``); a closure over the app costs a
    # call. Read at request time, so the lifespan may (re)place state.gw.
    def provide() -> Any:
        return pick(state().gw)

    return provide


def dependencies(state: Callable[[], State]) -> dict[str, Provide]:
    """Parameter name → provider, for the app whose State ``state()`` returns.

    A handler names what it needs: ``pool: AsyncConnectionPool``, ``ctx: CommandContext``.
    """
    provided = {name: Provide(_from_state(state, pick), sync_to_thread=False) for name, pick in _FROM_STATE.items()}
    return {**provided, "ctx": Provide(_ctx, sync_to_thread=False)}
