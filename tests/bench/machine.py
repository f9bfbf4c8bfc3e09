"""What the numbers were measured on."""

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg

from telemetry_core.embedded import nats_server_binary
from telemetry_core.settings import Settings


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    try:
        out = subprocess.run(
            ["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(path)], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(database_url: str, data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        pg = conn.execute("SELECT version()").fetchone()
        durability = ", ".join(
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers")
        )
    nats_version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, check=False)
    settings = Settings.from_env(env)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} logical CPUs (nproc {len(os.sched_getaffinity(0))}), {_cpu_model()}",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "postgresql": pg[0] if pg else "?",
        "postgresql settings": durability,
        "nats-server": (nats_version.stdout.strip() or nats_version.stderr.strip()).removeprefix("nats-server: "),
        "data directory filesystem": _filesystem(data_dir),
        "ingest batch": str(settings.ingest_fetch_batch),
        "ingest concurrency": str(settings.ingest_concurrency),
    }
