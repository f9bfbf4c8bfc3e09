"""The editable install imports telemetry_core from shared/ and telemetry_schemas from schemas/."""

from pathlib import Path

import telemetry_client
import telemetry_core
import telemetry_schemas

ROOT = Path(__file__).resolve().parents[2]


def test_packages_import_from_their_folders() -> None:
    assert Path(telemetry_core.__file__).resolve().parent == ROOT / "shared" / "telemetry_core"
    assert Path(telemetry_schemas.__file__).resolve().parent == ROOT / "schemas" / "telemetry_schemas"
    assert Path(telemetry_client.__file__).resolve().parent == ROOT / "shared" / "telemetry_client"


def test_migrations_ship_inside_the_package() -> None:
    from telemetry_core.migrate import migration_files

    versions = [v for v, _, _ in migration_files()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
