"""tests/bench/scratch.py: a benchmark's temporary directory goes when its process exits, unless kept."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKE = "from tests.bench.scratch import scratch_dir; d = scratch_dir('scratch-test-'); (d / 'data').write_text('x'); print(d)"


def run(keep: str) -> Path:
    env = {**os.environ, "BENCH_KEEP_TMP": keep, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", MAKE], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return Path(out.stdout.strip())


def test_the_directory_goes_when_the_process_exits() -> None:
    made = run("")
    assert made.name.startswith("scratch-test-") and not made.exists()


def test_bench_keep_tmp_keeps_it() -> None:
    made = run("1")
    try:
        assert (made / "data").read_text() == "x"
    finally:
        (made / "data").unlink()
        made.rmdir()
