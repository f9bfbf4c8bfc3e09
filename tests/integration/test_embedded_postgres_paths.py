"""The embedded PostgreSQL starts whatever the depth of its data directory (Unix socket paths are short)."""

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from telemetry_core.embedded import start_postgres

pytestmark = pytest.mark.slow


def test_a_data_directory_too_deep_for_a_socket_still_starts_and_serves_tcp(tmp_path: Path) -> None:
    # A parallel test run nests temp directories (popen-gw0/...): this one's socket path would be ~150 bytes.
    deep = tmp_path / ("d" * 60) / "servers" / "postgres"
    assert len(str(deep / "pgdata" / ".s.PGSQL.65535")) > 107
    server = start_postgres(deep, durable=False)
    try:
        with psycopg.connect(server.url) as conn:
            row = conn.execute("SELECT current_setting('unix_socket_directories')").fetchone()
        assert row == ("",)
        assert not list((deep / "pgdata").glob(".s.PGSQL.*"))
    finally:
        server.stop()


def test_a_short_data_directory_keeps_its_socket_for_psql() -> None:
    short = Path(tempfile.mkdtemp(prefix="pgs-", dir="/tmp"))
    server = start_postgres(short, durable=False)
    try:
        assert (short / "pgdata" / f".s.PGSQL.{server.port}").exists()
    finally:
        server.stop()
        shutil.rmtree(short, ignore_errors=True)
