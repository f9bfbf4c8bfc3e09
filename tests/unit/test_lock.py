"""requirements/lock.txt is what gets installed: it must match pyproject.toml and the running venv."""

import importlib.util
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock", ROOT / "requirements" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins(text: str) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for line in text.splitlines() if (m := _PIN.match(line))}


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    return [Requirement(r) for r in declared]


def test_lock_was_compiled_from_the_current_pyproject() -> None:
    lock = _lock_module()
    assert lock.recorded_digest(LOCK) == lock.inputs_digest(), (
        "pyproject.toml's dependencies changed since requirements/lock.txt was made: run `make lock`"
    )


def test_digest_changes_when_a_dependency_changes(tmp_path: Path) -> None:
    lock = _lock_module()
    original = (ROOT / "pyproject.toml").read_text()
    changed = tmp_path / "pyproject.toml"
    changed.write_text(original.replace('"msgspec>=0.18"', '"msgspec>=0.19"'))
    assert original != changed.read_text()
    assert lock.inputs_digest(changed) != lock.inputs_digest(ROOT / "pyproject.toml")


def test_every_direct_dependency_is_pinned_within_its_range() -> None:
    pins = _pins(LOCK.read_text())
    for requirement in _direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements/lock.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} is outside {requirement.specifier}"
        )


def test_every_pin_carries_hashes() -> None:
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    unhashed = [block.split()[0] for block in blocks if _PIN.match(block) and "--hash=sha256:" not in block]
    assert unhashed == []


def test_the_running_environment_is_the_locked_one() -> None:
    pins = _pins(LOCK.read_text())
    differing = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            differing[name] = (dist.version, pins[name])
    assert differing == {}, f"installed (version, locked version) differ: {differing}; run `make install`"


def test_runtime_lock_is_the_full_lock_without_dev_tools() -> None:
    runtime = _pins((ROOT / "requirements" / "runtime.txt").read_text())
    full = _pins(LOCK.read_text())
    assert {name: full.get(name) for name in runtime} == runtime
    assert "pytest" not in runtime and "msgspec" in runtime
