"""Optional (BENCH_PROFILE=1): sample the Python processes with py-spy during the sustained runs.

py-spy is not a project dependency; `pip install py-spy` into the venv to use this. Samples are
taken without pausing the target (--nonblocking) and only while the thread is on CPU (no --idle).
"""

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_OURS = ("gateway/", "ingest_worker/", "projection_worker/", "alert_worker/", "telemetry_core/", "telemetry_schemas/")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    process: str
    samples: int
    rate: int
    seconds: float
    self_top: list[tuple[str, float]]  # (function, % of on-CPU samples spent in it)
    inclusive_top: list[tuple[str, float]]  # (project function, % of on-CPU samples under it)


class Profiler:
    def __init__(self, binary: str, targets: dict[str, int], out_dir: Path, rate: int = 100) -> None:
        self._binary = binary
        self._targets = targets
        self._out = out_dir
        self._rate = rate
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._out.mkdir(parents=True, exist_ok=True)
        for name, pid in self._targets.items():
            argv = [
                self._binary, "record", "--pid", str(pid), "--rate", str(self._rate), "--format", "raw",
                "--function", "--nonblocking", "--output", str(self._out / f"{name}.txt"),
            ]  # fmt: skip
            log = (self._out / f"{name}.log").open("wb")
            self._procs[name] = subprocess.Popen(argv, stdout=log, stderr=log)
            log.close()

    def stop(self) -> list[Profile]:
        seconds = time.monotonic() - self._started
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out = []
        for name, proc in self._procs.items():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            path = self._out / f"{name}.txt"
            if path.exists():
                out.append(_summarize(name, path, self._rate, seconds))
        return out


def _frame_name(frame: str) -> str:
    """'write_rows (ingest_worker/writer.py:40)' → 'write_rows (ingest_worker/writer.py)', shortened paths."""
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("lib/"):
                path = "stdlib/" + path.split("/", 1)[1]
    for marker in ("/work/main/", "/shared/", "/schemas/"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
    return f"{func} ({path})" if path else func


def _summarize(name: str, path: Path, rate: int, seconds: float, top: int = 10) -> Profile:
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # the first element names the thread
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            if any(m in frame for m in _OURS):
                incl_counts[frame] += count
    pct = 100.0 / total if total else 0.0
    return Profile(
        process=name,
        samples=total,
        rate=rate,
        seconds=seconds,
        self_top=[(f, c * pct) for f, c in self_counts.most_common(top)],
        inclusive_top=[(f, c * pct) for f, c in incl_counts.most_common(top)],
    )
