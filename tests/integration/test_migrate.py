from telemetry_core.migrate import migrate, migration_files
from telemetry_core.settings import Settings


def test_migrate_is_idempotent_and_records_versions(settings: Settings) -> None:
    assert settings.database_url
    assert migrate(settings.database_url) == []  # the fixture already applied everything
    import psycopg

    with psycopg.connect(settings.database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM telemetry.schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in migration_files()]
