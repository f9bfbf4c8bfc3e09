"""telemetry_core.event_loop: the workers' entry points run their service on uvloop."""

import ast
import asyncio
from pathlib import Path

import uvloop

from telemetry_core import event_loop

REPO = Path(__file__).resolve().parents[2]


def test_runs_the_coroutine_on_a_uvloop_loop() -> None:
    async def which() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert event_loop.run(which()) is uvloop.Loop


def test_every_worker_main_uses_it() -> None:
    # A worker's main() that went back to asyncio.run would silently lose the loop (and its CPU per point).
    for worker in ("ingest_worker", "projection_worker", "alert_worker"):
        tree = ast.parse((REPO / worker / "main.py").read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        calls = {ast.unparse(n.func) for n in ast.walk(main) if isinstance(n, ast.Call)}
        assert "event_loop.run" in calls, worker
        assert "asyncio.run" not in calls, worker
