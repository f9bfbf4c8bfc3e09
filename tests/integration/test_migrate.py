"""Migrations: applied once each, recorded with their sha256, and frozen once applied."""

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from telemetry_core.migrate import MigrationChangedError, checksum, migrate, migration_files
from telemetry_core.settings import Settings
from tests.support.ids import unique


@pytest.fixture
def fresh_db(settings: Settings) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards."""
    assert settings.database_url
    name = unique("migrate").lower().replace("-", "_")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urlsplit(settings.database_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _ledger(url: str) -> list[tuple[int, str, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, name, checksum FROM telemetry.schema_migrations ORDER BY version"
        ).fetchall()


def test_migrate_is_idempotent_and_records_versions(settings: Settings) -> None:
    assert settings.database_url
    assert migrate(settings.database_url) == []  # the fixture already applied everything
    with psycopg.connect(settings.database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM telemetry.schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in migration_files()]


def test_a_fresh_database_migrates_with_checksums_and_a_rerun_is_a_no_op(fresh_db: str) -> None:
    files = migration_files()
    assert migrate(fresh_db) == [name for _, name, _ in files]
    assert _ledger(fresh_db) == [(v, name, checksum(text)) for v, name, text in files]
    assert migrate(fresh_db) == []
    assert _ledger(fresh_db) == [(v, name, checksum(text)) for v, name, text in files]


def test_a_changed_applied_migration_is_refused_with_its_name(fresh_db: str) -> None:
    files = migration_files()
    migrate(fresh_db)
    edited = [(v, n, t + "\n-- edited in place\n" if n.startswith("0005_") else t) for v, n, t in files]
    with pytest.raises(MigrationChangedError, match=r"0005_rollups\.sql") as refused:
        migrate(fresh_db, edited)
    assert "0001_" not in str(refused.value)  # only the changed file is named
    # A pending migration is not applied past the refusal either.
    with pytest.raises(MigrationChangedError):
        migrate(fresh_db, [*edited, (9999, "9999_never.sql", "CREATE TABLE telemetry.never (x int)")])
    assert 9999 not in [v for v, _, _ in _ledger(fresh_db)]


def test_a_ledger_without_checksums_is_adopted_once(fresh_db: str) -> None:
    files = migration_files()
    migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:  # a database migrated before the ledger had checksums
        conn.execute("ALTER TABLE telemetry.schema_migrations DROP COLUMN checksum")
    assert migrate(fresh_db) == []
    assert _ledger(fresh_db) == [(v, name, checksum(text)) for v, name, text in files]
    edited = [(v, n, t + "-- later edit\n" if v == 1 else t) for v, n, t in files]
    with pytest.raises(MigrationChangedError, match=r"0001_points\.sql"):
        migrate(fresh_db, edited)  # from then on, frozen


def test_telemetry_migrate_refuses_to_start_naming_the_changed_file(fresh_db: str) -> None:
    migrate(fresh_db)
    with psycopg.connect(fresh_db) as conn:  # what the ledger sees after 0003 was edited in place
        conn.execute("UPDATE telemetry.schema_migrations SET checksum = repeat('0', 64) WHERE version = 3")
    done = subprocess.run(
        [sys.executable, "-m", "telemetry_core.cli", "migrate"],
        env={**os.environ, "DATABASE_URL": fresh_db},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "0003_latest_values.sql" in done.stderr
    assert "frozen" in done.stderr
