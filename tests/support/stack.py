"""The real processes (gateway, ingest worker, projection worker) as subprocesses, for e2e tests."""

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from telemetry_core.embedded import free_port
from tests.support.servers import Servers

PROCESSES = ("gateway", "ingest-worker", "projection-worker", "alert-worker")
# Settings of the test suite's stacks that differ from the product's defaults (benchmarks leave them out).
SUITE_SETTINGS = {
    # The suite's points have timestamps of any age on one shared database: no scheduled retention
    # (tests/integration/test_retention.py runs the job on a database of its own).
    "TELEMETRY_RETENTION_INTERVAL": "0",
    # Fold the hours' pending sketches often, so that the suite's reads meet folds (migration 0023).
    "TELEMETRY_SKETCH_COMPACTION_INTERVAL": "1",
}


def tree_env(tree: Path) -> dict[str, str]:
    """Environment that makes a Python process import the project from ``tree`` (a checkout of another commit)."""
    return {"PYTHONPATH": os.pathsep.join(str(tree / p) for p in ("", "schemas", "shared"))}


SIGNING_KEY = secrets.token_urlsafe(32)


@dataclass
class Stack:
    """Gateway and workers against ``servers``; each process can be killed and restarted."""

    servers: Servers
    log_dir: Path
    api_key: str = "test-key-0123456789"
    # Every Stack of a test run shares one: a second gateway on the same servers signs like the first.
    signing_key: str = SIGNING_KEY
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # A checkout of another commit whose code the processes run (benchmarks comparing builds); None: this tree.
    tree: Path | None = None
    # The suite's own settings (SUITE_SETTINGS); False: the product's defaults, as a user runs it (benchmarks).
    suite_settings: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            NATS_URL=self.servers.nats_url,
            DATABASE_URL=self.servers.database_url,
            TELEMETRY_PORT=str(self.port),
            TELEMETRY_API_KEYS=self.api_key,
            TELEMETRY_SIGNING_KEY=self.signing_key,
            TELEMETRY_LOG_FORMAT="json",
        )
        if self.suite_settings:
            env.update(SUITE_SETTINGS)
        env.update(self.extra_env)  # a stack's own settings override the suite's above
        if self.tree is not None:  # import the project from there (its own directory as cwd: see start)
            env.update(tree_env(self.tree))
        return env

    def start(self, name: str, label: str | None = None, **env: str) -> None:
        """Start one process as ``label`` (default: its name); output goes to log_dir/<label>.log."""
        label = label or name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{label}.log").open("ab")
        self.procs[label] = subprocess.Popen(
            [sys.executable, "-m", "telemetry_core.cli", name],
            env={**self.env(), **env},
            stdout=log,
            stderr=log,
            cwd=self.tree,
        )
        log.close()

    def start_all(self, names: tuple[str, ...] = PROCESSES) -> "Stack":
        for name in names:
            self.start(name)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not healthy within {timeout}s:\n{self.log_tail('gateway')}")

    def kill(self, name: str) -> None:
        """SIGKILL one process: no chance to finish or clean up."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"
