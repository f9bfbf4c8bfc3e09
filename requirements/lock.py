"""`make lock`: compile requirements/lock.txt, runtime.txt and build.txt from pyproject.toml, pinned with hashes.

The lock is universal (every platform and Python >= 3.11 the project supports) and names no index, so a
fresh machine installs exactly what was tested, from whichever PyPI mirror it is configured for. Its first
line records a digest of the inputs it was compiled from; tests/unit/test_lock.py fails when pyproject.toml
changed without `make lock`. Standard library only: it runs before anything is installed.
"""

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
BUILD = ROOT / "requirements" / "build.txt"
RUNTIME = ROOT / "requirements" / "runtime.txt"
STAMP_PREFIX = "# inputs-sha256: "


def inputs_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """Digest of everything in pyproject.toml that decides what the lock holds."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {k: sorted(v) for k, v in project.get("optional-dependencies", {}).items()},
        "build-system": sorted(data.get("build-system", {}).get("requires", [])),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    """The digest the lock was compiled from (None when the stamp line is missing)."""
    first = lock.read_text().splitlines()[0] if lock.exists() else ""
    return first.removeprefix(STAMP_PREFIX) if first.startswith(STAMP_PREFIX) else None


def _compile(uv: str, args: list[str], out: Path, upgrade: bool, stdin: str | None = None) -> None:
    argv = [uv, "pip", "compile", *args, "--universal", "--generate-hashes", "--python-version", "3.11",
            "--no-header", "--quiet", "-o", str(out)]  # fmt: skip
    if upgrade:
        argv.append("--upgrade")
    print("==>", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, cwd=ROOT, input=stdin, text=True)


# Where the lock must install from wheels alone (no compiler needed): the Pythons and Linux machines we support.
WHEEL_TARGETS = [(platform, python) for platform in ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28")
                 for python in ("3.11", "3.12", "3.13")]  # fmt: skip


def check_wheels(uv: str) -> None:
    """Fail when a locked version has no wheel for one of WHEEL_TARGETS (pgserver 0.1.4 had none for 3.13/arm64)."""
    for platform, python in WHEEL_TARGETS:
        argv = [uv, "pip", "compile", "pyproject.toml", "--extra", "dev", "--constraint", str(LOCK),
                "--python-platform", platform, "--python-version", python, "--only-binary", ":all:",
                "--no-header", "--quiet", "-o", os.devnull]  # fmt: skip
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the lock does not install from wheels on {platform} / Python {python}:\n{done.stderr}")
        print(f"==> wheels for every locked package on {platform} / Python {python}", flush=True)


def main(uv: str, upgrade: bool) -> None:
    """Compile both files (keeping current pins unless ``upgrade``) and stamp the lock."""
    _compile(uv, ["pyproject.toml", "--extra", "dev"], LOCK, upgrade)
    # The service alone (deploy/Dockerfile): a subset of the lock, at the very same versions.
    _compile(uv, ["pyproject.toml", "--constraint", str(LOCK)], RUNTIME, upgrade=False)
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    _compile(uv, ["-"], BUILD, upgrade, stdin="\n".join(build_requires) + "\n")
    body = LOCK.read_text()
    header = f"{STAMP_PREFIX}{inputs_digest()}\n# Made by `make lock` (requirements/lock.py); do not edit.\n"
    LOCK.write_text(header + body)
    print("==> wrote requirements/lock.txt, runtime.txt and build.txt", flush=True)
    check_wheels(uv)


if __name__ == "__main__":
    main(sys.argv[1], upgrade="--upgrade" in sys.argv[2:])
