"""The event loop the long-running workers run on: uvloop, as the gateway's uvicorn does.

The workers spent part of their CPU per point in asyncio's pure-Python selector loop (socket reads of NATS
fetches and PostgreSQL replies, callbacks, timers); uvloop does that work in C. nats-py and psycopg's async
connections need only add_reader/add_writer and the usual loop API, which uvloop provides.
"""

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new uvloop event loop."""
    return uvloop.run(main)
