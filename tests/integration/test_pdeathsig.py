"""A child started with ``die_with_parent`` dies when its parent is SIGKILLed, also after a user switch."""

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from telemetry_core.pdeathsig import supported
from tests.support.eventually import eventually

pytestmark = pytest.mark.skipif(not supported(), reason="PR_SET_PDEATHSIG is Linux only")

# As root, the child switches to PostgreSQL's user the way start_postgres does: the kernel clears
# a parent-death signal set before a credential change, so this checks it is set after.
USER = "pgserver" if os.geteuid() == 0 else None

PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from telemetry_core.pdeathsig import die_with_parent
    tie = die_with_parent(signal.SIGTERM) if sys.argv[1] == "tied" else None
    user = sys.argv[2] or None
    child = subprocess.Popen(["sleep", "120"], user=user, start_new_session=True, preexec_fn=tie)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def orphan_after_parent_killed(mode: str) -> psutil.Process:
    """Start a parent that starts ``sleep``; SIGKILL the parent; return the sleep process."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode, USER or ""], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    if USER is not None:
        assert child.username() == USER
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    return child


def gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_tied_child_dies_with_its_killed_parent() -> None:
    child = orphan_after_parent_killed("tied")
    eventually(lambda: gone(child), timeout=10, what="the child died with its parent")


def test_untied_child_outlives_its_killed_parent() -> None:
    # The control: without the parent-death signal the same child is left running.
    child = orphan_after_parent_killed("untied")
    try:
        assert not gone(child)
    finally:
        child.kill()
