"""Apply migrations/NNNN_*.sql in order, once each, under an advisory lock; refuse changed ones.

A migration is frozen once applied: the ledger records each file's sha256, and a file whose text no
longer matches what was applied stops start-up (an edit in place would never reach that database).
Ledgers from before checksums are adopted: the current files' checksums are recorded once.
"""

import hashlib
from importlib import resources

import psycopg

from telemetry_core.errors import ConfigurationError

# Any fixed number; every process that migrates takes the same lock so two never race.
_MIGRATION_LOCK = 7_218_001

_LEDGER = """
CREATE SCHEMA IF NOT EXISTS telemetry;
CREATE TABLE IF NOT EXISTS telemetry.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE telemetry.schema_migrations ADD COLUMN IF NOT EXISTS checksum text
"""
_APPLIED = "SELECT version, checksum FROM telemetry.schema_migrations"
_ADOPT = "UPDATE telemetry.schema_migrations SET checksum = %s WHERE version = %s AND checksum IS NULL"
_RECORD = "INSERT INTO telemetry.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"


class MigrationChangedError(ConfigurationError):
    """An applied migration's file no longer has the text that was applied."""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in the package, in order."""
    found = []
    for entry in resources.files("telemetry_core").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def checksum(sql: str) -> str:
    """The sha256 (hex) of a migration's text, as recorded in the ledger."""
    return hashlib.sha256(sql.encode()).hexdigest()


def _changed(files: list[tuple[int, str, str]], recorded: dict[int, str | None]) -> list[str]:
    return [
        f"{name} (applied sha256 {recorded[version]}, file now {checksum(sql)})"
        for version, name, sql in files
        if recorded.get(version) is not None and recorded[version] != checksum(sql)
    ]


def migrate(database_url: str, files: list[tuple[int, str, str]] | None = None) -> list[str]:
    """Apply pending migrations (``files``, default the shipped ones); return the names of those applied now.

    Raises MigrationChangedError, naming the files, when an applied migration's text has changed.
    """
    applied: list[str] = []
    files = migration_files() if files is None else files
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(_LEDGER)
            recorded: dict[int, str | None] = dict(conn.execute(_APPLIED).fetchall())
            changed = _changed(files, recorded)
            if changed:
                raise MigrationChangedError(
                    "applied migration(s) changed since they were applied: " + "; ".join(changed)
                    + ". Migrations are frozen once applied: restore the file(s) and put the change in a new"
                    " migration."
                )  # fmt: skip
            for version, name, sql in files:
                if version in recorded:
                    if recorded[version] is None:  # a ledger from before checksums: adopt the shipped text
                        conn.execute(_ADOPT, (checksum(sql), version))
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())  # trusted file shipped with the package
                    conn.execute(_RECORD, (version, name, checksum(sql)))
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied
