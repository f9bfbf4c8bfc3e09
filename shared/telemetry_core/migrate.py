"""Apply migrations/NNNN_*.sql in order, once each, under an advisory lock."""

from importlib import resources

import psycopg

# Any fixed number; every process that migrates takes the same lock so two never race.
_MIGRATION_LOCK = 7_218_001

_LEDGER = """
CREATE SCHEMA IF NOT EXISTS telemetry;
CREATE TABLE IF NOT EXISTS telemetry.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in the package, in order."""
    found = []
    for entry in resources.files("telemetry_core").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; return the names of those applied now."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(_LEDGER)
            done = {row[0] for row in conn.execute("SELECT version FROM telemetry.schema_migrations")}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())  # trusted file shipped with the package
                    conn.execute(
                        "INSERT INTO telemetry.schema_migrations (version, name) VALUES (%s, %s)", (version, name)
                    )
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied
