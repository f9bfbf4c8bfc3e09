"""More ingest-worker processes beside the Stack's one, as `telemetry run` starts with TELEMETRY_INGEST_WORKERS."""

import subprocess
import sys

from tests.support.stack import Stack


def start_ingest_workers(stack: Stack, n: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        log = (stack.log_dir / f"ingest-worker-{i + 2}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "telemetry_core.cli", "ingest-worker"], env=stack.env(), stdout=log, stderr=log
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
