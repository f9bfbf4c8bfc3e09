"""The single exception → HTTP mapping; every error body is ``{"detail": ...}``."""

import enum
import re
import types
import typing
from typing import Any, Literal

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from psycopg import DatabaseError, OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.line_protocol_bodies import influx_error_fields
from gateway.metrics import OVERLOAD_REFUSALS
from telemetry_core.errors import ServiceUnavailableError
from telemetry_core.pg_pool import pool_exhausted

log = structlog.get_logger()


class ApiError(Exception):
    """A client error with a status and a detail that names the field and index at fault."""

    def __init__(self, status: int, detail: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra or {}


class ServiceBusy(ApiError):
    """503 with Retry-After: the service is overloaded (not down); the same request may pass in a moment."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(503, detail)
        self.retry_after_s = retry_after_s


def bad_request(detail: str) -> ApiError:
    """400: the request cannot be read (bad JSON, bad encoding, over a limit)."""
    return ApiError(400, detail)


def unprocessable(detail: str, **extra: Any) -> ApiError:
    """422: the request is readable but a field is invalid."""
    return ApiError(422, detail, extra)


def conflict(detail: str) -> ApiError:
    """409: the resource exists, or another writer changed it first."""
    return ApiError(409, detail)


def not_found(detail: str) -> ApiError:
    """404."""
    return ApiError(404, detail)


EMPTY_BODY = "request body is empty; send a JSON object"


def too_large_detail(limit: int) -> str:
    """The 413 detail, whether the wire size or the decompressed size is over ``limit``."""
    return f"request body exceeds {limit} bytes (after decompression)"


def _body_missing(exc: ValidationException) -> bool:
    """Litestar's answer to an empty body on a route that needs one (its ``data`` could not be filled)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    return any(isinstance(e, dict) and e.get("key") == "data" for e in extra)


def _body(
    detail: str, status: int, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response({"detail": detail, **(extra or {})}, status_code=status, media_type=MediaType.JSON, headers=headers)


def _unauthenticated_miss(request: Request[Any, Any, Any], exc: Exception) -> NotAuthorizedException | None:
    """For a path or method no route matches: the 401 an unauthenticated caller gets instead of 404/405.

    Guards run only on matched routes, so without this an anonymous caller could map the API by its
    404s. /health* stays open. The authenticator is reached through app state (no import cycle).
    """
    routed = request.scope.get("route_handler") is not None
    if routed or not isinstance(exc, NotFoundException | MethodNotAllowedException):
        return None
    if request.url.path.startswith("/health"):
        return None
    gw = getattr(request.app.state, "gw", None)
    if gw is None:
        return None
    try:
        gw.auth.identify(request)
    except NotAuthorizedException as denied:
        return denied
    return None


def _allowed_values(annotation: Any) -> list[str]:
    """The values an enum or Literal parameter accepts (through Optional and Annotated), else []."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _allowed_values(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [v for arg in typing.get_args(annotation) for v in _allowed_values(arg)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    return []


_MISSING = re.compile(r"^Missing required (?P<source>\w+) parameter '(?P<key>[^']+)'")


def parameter_detail(request: Request[Any, Any, Any], exc: ValidationException) -> str:
    """Name each query/path/header parameter at fault, with the values it accepts; never echo the URL."""
    params = request.route_handler.parsed_fn_signature.parameters
    problems = []
    for error in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(error, dict) or not error.get("key"):
            continue
        key = str(error["key"])
        message = str(error.get("message") or "invalid value")[:200]  # it may quote the value sent
        field = params.get(key)
        allowed = _allowed_values(field.annotation) if field is not None else []
        problems.append(f"{key}: {message}" + (f"; allowed values: {', '.join(allowed)}" if allowed else ""))
    if problems:
        return "; ".join(problems)
    missing = _MISSING.match(exc.detail or "")
    if missing:
        return f"{missing['key']}: required {missing['source']} parameter is missing"
    return "invalid request parameters"


POOL_BUSY_RETRY_AFTER_S = 1


def _overload_answer(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]] | None:
    """A statement past its timeout (504), a pool wait timed out with every connection in use (503 busy), ...

    ... or a read a replica cancelled to replay the primary's changes (503 with Retry-After).

    A pool wait that timed out while connections are missing is PostgreSQL being down: not answered here.
    """
    gw = getattr(request.app.state, "gw", None)
    if isinstance(exc, QueryCanceled):
        OVERLOAD_REFUSALS.labels("statement_timeout").inc()
        limit = f"{gw.settings.statement_timeout_s:g}s " if gw is not None else ""
        log.warning("statement_timeout", path=request.url.path)
        detail = (
            f"the query ran longer than the statement timeout {limit}(TELEMETRY_STATEMENT_TIMEOUT) and was "
            "cancelled; ask for a shorter range, fewer devices or an interval the rollups serve"
        )
        return _body(detail, 504)
    busy = _exhausted_pool(gw) if isinstance(exc, PoolTimeout) else None
    if busy is not None and gw is not None:
        OVERLOAD_REFUSALS.labels("pool_busy").inc()
        log.warning("pool_busy", path=request.url.path)
        detail = (
            f"the service is busy: all {busy.max_size} database connections stayed in use for "
            f"{gw.settings.db_timeout_s:g}s (TELEMETRY_DB_TIMEOUT); retry after the Retry-After seconds"
        )
        return _body(detail, 503, headers={"Retry-After": str(POOL_BUSY_RETRY_AFTER_S)})
    if isinstance(exc, DatabaseError) and (exc.sqlstate or "").startswith("40"):  # class 40: transaction rollback
        # A hot standby (DATABASE_READ_URL) cancels a read whose snapshot or lock stands in the way of replaying
        # the primary's changes ("conflict with recovery", SQLSTATE 40001/40P01); the same read passes on retry.
        OVERLOAD_REFUSALS.labels("read_conflict").inc()
        log.warning("read_cancelled_by_database", path=request.url.path, error=str(exc))
        detail = f"the database cancelled the read ({str(exc).splitlines()[0]}); retry after the Retry-After seconds"
        return _body(detail, 503, headers={"Retry-After": str(POOL_BUSY_RETRY_AFTER_S)})
    return None


def _exhausted_pool(gw: Any) -> AsyncConnectionPool | None:
    """The gateway's pool (primary's or replica's) with every connection in use, if one is; None otherwise."""
    if gw is None:
        return None
    return next((pool for pool in (gw.read_pool, gw.pool) if pool_exhausted(pool)), None)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Map any exception raised by a handler to its status and ``{"detail": ...}`` body.

    On the InfluxDB write paths the body also has InfluxDB's own error fields, so that Telegraf and Influx
    clients report the reason (gateway/line_protocol_bodies.py).
    """
    response = _answer(request, exc)
    extra = influx_error_fields(request.url.path, response.status_code or 500, str(response.content.get("detail", "")))
    if extra:
        response.content = {**extra, **response.content, "errors": []}
    return response


def _answer(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    denied = _unauthenticated_miss(request, exc)
    if denied is not None:
        exc = denied
    if isinstance(exc, ServiceBusy):
        return _body(exc.detail, exc.status, headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, ApiError):
        return _body(exc.detail, exc.status, exc.extra)
    if isinstance(exc, ServiceUnavailableError):
        return _body(str(exc), 503)
    overloaded = _overload_answer(request, exc)
    if overloaded is not None:
        return overloaded
    if isinstance(exc, PoolTimeout | OperationalError):
        log.warning("database_unavailable", path=request.url.path, error=str(exc))
        return _body("PostgreSQL is unavailable: " + str(exc).splitlines()[0], 503)
    if isinstance(exc, NotAuthorizedException):
        return _body(exc.detail, 401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ValidationException):
        if _body_missing(exc):
            return _body(EMPTY_BODY, 400)
        # A query, path or header parameter: a field of the request is invalid, like a body field (422).
        return _body(parameter_detail(request, exc), 422)
    if isinstance(exc, RequestEntityTooLarge):
        return _body(too_large_detail(request.route_handler.resolve_request_max_body_size() or 0), 413)
    if isinstance(exc, HTTPException):
        # Keeps the exception's headers: Retry-After on 429, Allow on 405, WWW-Authenticate on 401.
        return _body(exc.detail, exc.status_code, headers=exc.headers or None)
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return _body("internal server error", 500)
