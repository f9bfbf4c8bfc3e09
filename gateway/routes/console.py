"""The web console: its page at ``/`` and its static files under ``/console/``, public and outside the API document.

Public because a browser must load the page before it can ask for a key (the key then goes in the X-Api-Key
header of every API call the page makes, never in a URL). The files are read once, at import, from the
package (gateway/console/), and served from a fixed table: a path that is not in it is a 404, so nothing
outside that folder can be named. No CDN: the chart library is vendored (gateway/console/vendor/NOTICE.md).
"""

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, HeaderParameter

_ROOT = Path(__file__).resolve().parent.parent / "console"
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# Only what the page itself loads: scripts and styles from this origin, API calls and the WebSocket stream to it.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with each release: revalidate rather than serve a stale console.
    "Cache-Control": "no-cache",
}
_OPT = {"public": True}


@dataclass(frozen=True)
class ConsoleFile:
    """One servable file: as it is and gzipped once (phones on slow links get a third of the bytes)."""

    content: bytes
    gzipped: bytes
    media_type: str


def _load(root: Path) -> dict[str, ConsoleFile]:
    """Every servable file under ``root``: its path relative to it → the file."""
    return {
        path.relative_to(root).as_posix(): ConsoleFile(
            path.read_bytes(), gzip.compress(path.read_bytes(), mtime=0), _TYPES[path.suffix]
        )
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in _TYPES
    }


FILES = _load(_ROOT)


def _serve(name: str, accept_encoding: str | None) -> Response[bytes]:
    found = FILES.get(name)
    if found is None:
        raise NotFoundException(f"console file {name!r} not found")
    if "gzip" in (accept_encoding or "").lower():
        headers = {**_HEADERS, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(found.gzipped, media_type=found.media_type, headers=headers)
    return Response(found.content, media_type=found.media_type, headers={**_HEADERS, "Vary": "Accept-Encoding"})


_ENCODING = HeaderParameter(name="accept-encoding", required=False)


@get("/", opt=_OPT, include_in_schema=False, sync_to_thread=False)
def console_page(accept_encoding: Annotated[str | None, _ENCODING] = None) -> Response[bytes]:
    """The console's single page (every view is drawn by console/app.js)."""
    return _serve("index.html", accept_encoding)


@get("/console/{name:path}", opt=_OPT, include_in_schema=False, sync_to_thread=False)
def console_file(name: FromPath[str], accept_encoding: Annotated[str | None, _ENCODING] = None) -> Response[bytes]:
    """A script, style sheet or vendored file of the console."""
    return _serve(name.lstrip("/"), accept_encoding)


ROUTES = [console_page, console_file]
