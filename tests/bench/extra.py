"""More ingest-worker processes beside the Stack's one, as `telemetry run` starts with TELEMETRY_INGEST_WORKERS."""

import subprocess
import sys

from tests.support.stack import Stack


def start_ingest_workers(
    stack: Stack, n: int, env: dict[str, str] | None = None, first: int = 2
) -> list[subprocess.Popen[bytes]]:
    """``n`` more ingest workers (logs ingest-worker-<first>.log, …), with ``env`` on top of the stack's."""
    procs = []
    for i in range(n):
        log = (stack.log_dir / f"ingest-worker-{i + first}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "telemetry_core.cli", "ingest-worker"],
                env={**stack.env(), **(env or {})},
                stdout=log,
                stderr=log,
            )
        )
        log.close()
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
