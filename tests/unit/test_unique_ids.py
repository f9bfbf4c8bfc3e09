"""gateway/unique_ids.py: ids that replace uuid4 on the ingest path stay unique and shaped like uuid4().hex."""

import os
import re
import subprocess
import sys

from gateway.unique_ids import new_id


def test_ids_are_32_hex_and_never_repeat_in_a_process() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids[:1000] + ids[-1000:])
    assert len(set(ids)) == len(ids)
    # One prefix per process, the counter after it: consecutive ids differ only in their last half.
    assert ids[0][:16] == ids[-1][:16]
    assert int(ids[-1][16:], 16) - int(ids[0][16:], 16) == len(ids) - 1


def test_a_forked_child_draws_its_own_prefix() -> None:
    """A fork after import (e.g. a process pool) must not continue the parent's sequence in two processes."""
    parent = new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id and leave without running the parent's cleanup
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:16] != parent[:16]
    assert new_id()[:16] == parent[:16]


def test_separate_processes_get_separate_prefixes() -> None:
    """N gateway copies and restarts are separate interpreters: each draws its prefix at import."""
    code = "from gateway.unique_ids import new_id; print(new_id())"
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
           for _ in range(3)}  # fmt: skip
    ids.add(new_id())
    assert len({i[:16] for i in ids}) == 4
