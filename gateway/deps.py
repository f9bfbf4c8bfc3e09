"""What route handlers receive by name (Litestar dependency injection), and small request helpers."""

import re
import uuid
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from psycopg_pool import AsyncConnectionPool

from gateway.auth.guard import principal_of
from gateway.commands.aggregate import CommandContext
from gateway.commands.alert_rules import AlertRuleCommands
from gateway.commands.alerts import AlertCommands
from gateway.commands.metric_definitions import MetricDefinitionCommands
from gateway.errors import bad_request
from gateway.live.hub import LiveHub
from gateway.off_loop import OffLoop
from gateway.state import GatewayState
from telemetry_core.headers import REQUEST_ID
from telemetry_core.settings import Settings
from telemetry_schemas.fields import SUBJECT_SAFE

_SAFE = re.compile(SUBJECT_SAFE)


def request_id(request: Request[Any, Any, Any]) -> str:
    """The caller's X-Request-Id (carried into message headers and worker logs), or a new one."""
    given = request.headers.get(REQUEST_ID.lower())
    return given[:64] if given else uuid.uuid4().hex


def checked_name(value: str, what: str) -> str:
    """Validate a device id or metric name from the path: subject-safe, 1-128 characters."""
    if not 1 <= len(value) <= 128 or not _SAFE.match(value):
        raise bad_request(f"{what} {value!r} is invalid: use 1-128 characters from A-Z a-z 0-9 _ - :")
    return value


def _gw(state: State) -> GatewayState:
    gw: GatewayState = state.gw  # put there by the lifespan
    return gw


def _pool(gw: GatewayState) -> AsyncConnectionPool:
    # Handlers that name ``pool`` only read: they get the replica's pool when DATABASE_READ_URL is set (a write
    # there fails: a standby is read-only). The gateway writes nothing to PostgreSQL: commands go to EVENTS.
    return gw.read_pool


def _settings(gw: GatewayState) -> Settings:
    return gw.settings


def _ctx(request: Request[Any, Any, Any]) -> CommandContext:
    return CommandContext(principal=principal_of(request), request_id=request_id(request))


def _metric_commands(gw: GatewayState) -> MetricDefinitionCommands:
    return gw.commands.metrics


def _rule_commands(gw: GatewayState) -> AlertRuleCommands:
    return gw.commands.rules


def _alert_commands(gw: GatewayState) -> AlertCommands:
    return gw.commands.alerts


def _off_loop(gw: GatewayState) -> OffLoop:
    return gw.off_loop


def _live(gw: GatewayState) -> LiveHub:
    return gw.live


# Parameter name → provider. A handler names what it needs: ``pool: AsyncConnectionPool``, ``ctx: CommandContext``.
_PROVIDERS: dict[str, Callable[..., Any]] = {
    "gw": _gw,
    "pool": _pool,
    "settings": _settings,
    "ctx": _ctx,
    "metric_commands": _metric_commands,
    "rule_commands": _rule_commands,
    "alert_commands": _alert_commands,
    "off_loop": _off_loop,
    "live": _live,
}
DEPENDENCIES = {name: Provide(provider, sync_to_thread=False) for name, provider in _PROVIDERS.items()}
