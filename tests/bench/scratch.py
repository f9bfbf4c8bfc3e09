"""Temporary directories of the benchmarks, removed when the process exits (``BENCH_KEEP_TMP=1`` keeps them)."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory, removed with everything in it when this process exits, unless BENCH_KEEP_TMP=1.

    A benchmark's servers keep gigabytes there (PostgreSQL's data and WAL, NATS's streams): left behind by every run
    of `make bench`, they filled a 77 GB disk in a day. Its logs are there too, hence the switch to keep them after a
    failed run. Removed at exit, not at the end of a block: the modules stop their servers in their own order first.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("BENCH_KEEP_TMP") != "1":
        atexit.register(shutil.rmtree, root, True)
    return root
