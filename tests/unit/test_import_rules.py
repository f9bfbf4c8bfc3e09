"""Dependencies point inward: schemas ← core ← processes, and processes never import each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = {"gateway", "ingest_worker", "alert_worker", "projection_worker"}
PACKAGES = {
    "telemetry_schemas": ROOT / "schemas" / "telemetry_schemas",
    "telemetry_core": ROOT / "shared" / "telemetry_core",
    # The client is what users install next to their own code: contracts only, never the service's core.
    "telemetry_client": ROOT / "shared" / "telemetry_client",
    **{p: ROOT / p for p in PROCESSES},
}
ALLOWED = {
    "telemetry_schemas": {"telemetry_schemas"},
    "telemetry_core": {"telemetry_schemas", "telemetry_core"},
    "telemetry_client": {"telemetry_schemas", "telemetry_client"},
    **{p: {"telemetry_schemas", "telemetry_core", p} for p in PROCESSES},
}
OURS = set(PACKAGES)


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots & OURS


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_imports_point_inward(package: str) -> None:
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) - ALLOWED[package])
        for f in PACKAGES[package].rglob("*.py")
        if imported_roots(f) - ALLOWED[package]
    }
    assert offenders == {}


def test_schemas_depend_on_msgspec_and_stdlib_only() -> None:
    third_party = {"nats", "psycopg", "psycopg_pool", "structlog", "tenacity", "litestar"}
    for f in PACKAGES["telemetry_schemas"].rglob("*.py"):
        tree = ast.parse(f.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & third_party, f"{f} imports {names & third_party}"
