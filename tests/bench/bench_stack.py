"""A benchmark's own servers and stack: started in a fresh directory, always stopped and removed afterwards."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import Servers, start_servers
from tests.support.stack import Stack


@contextmanager
def bench_stack(prefix: str) -> Iterator[tuple[Path, Servers, Stack]]:
    """(directory, durable NATS + PostgreSQL, a Stack on them with no process started yet)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    servers = start_servers(root / "servers", durable=True)
    stack = Stack(servers, root / "logs", suite_settings=False)
    try:
        yield root, servers, stack
    finally:
        stack.stop_all()
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)
