"""OPTIONS answers with every method of the path in ``Allow``.

Litestar gives each route handler its own route and answers OPTIONS from the first route of a path, so
``GET`` and ``POST`` on /metrics would answer OPTIONS with ``Allow: OPTIONS, POST``. The app's method map
knows every handler of the path; this hook answers from it (405s already list every method).
"""

from typing import Any

from litestar import Request, Response
from litestar.status_codes import HTTP_204_NO_CONTENT

from gateway.auth.guard import guard_request


async def before_every_request(request: Request[Any, Any, Any]) -> Response[None] | None:
    """The app's ``before_request`` hook: the credentials guard (401/429/403) first, then OPTIONS."""
    await guard_request(request)
    return await allow_every_method(request)


async def allow_every_method(request: Request[Any, Any, Any]) -> Response[None] | None:
    """``before_request`` hook: answer OPTIONS itself; let every other request through untouched.

    Async on purpose: Litestar runs a sync hook in a worker thread, a thread-pool round trip on every request
    (found profiling the gateway: about a tenth of q1's CPU).
    """
    if request.method != "OPTIONS":
        return None
    methods: set[str] = set()
    for path in request.route_handler.paths:
        methods.update(request.app.route_handler_method_map.get(path, {}))
    return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": ", ".join(sorted(methods))})
