"""A migrated database of a test's own on the session's PostgreSQL server (for jobs that touch every row)."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from telemetry_core.migrate import migrate


@contextmanager
def own_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create and migrate a fresh database; yield its URL; drop it after."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())  # a name made here, not input
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@contextmanager
def copy_of(server_url: str, template_url: str) -> Iterator[str]:
    """A second database copied from ``template_url``'s (no connection to it may be open): no migrating again."""
    template = template_url.rsplit("/", 1)[1]
    name = f"{template}_copy"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}".encode())  # names made here, not input
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
