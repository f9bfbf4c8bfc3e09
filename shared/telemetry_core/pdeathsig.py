"""Children that die with the process that started them (Linux ``PR_SET_PDEATHSIG``).

``die_with_parent(sig)`` returns a ``preexec_fn`` for ``subprocess.Popen``. CPython runs the
preexec_fn in the forked child *after* ``setsid``, ``setgroups``, ``setregid`` and ``setreuid``
(``_posixsubprocess.c``, ``child_exec``), and the kernel clears the parent-death signal on a
credential change, so setting it there keeps it for a child started with ``user=`` (PostgreSQL
as ``pgserver`` when we are root) as well; execve of an ordinary (non-set-user-ID) binary keeps it.

Two caveats the callers must respect:
* The signal fires when the *thread* that forked the child exits, not only the process: start
  children from the main thread or a thread that lives as long as the children should.
* If the parent died between ``fork`` and ``prctl``, no signal will ever come: the child checks
  its parent is still the one that forked it and gives up otherwise.

Off Linux (no prctl) the returned function does nothing: children then outlive a killed parent.
"""

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    typed: Callable[..., int] = prctl
    return typed


# Looked up once here, not in the forked child: the preexec_fn should do as little as possible
# (other threads may hold locks the child would inherit).
_PRCTL = _load_prctl()


def supported() -> bool:
    """Whether children can be tied to their parent's life on this platform."""
    return _PRCTL is not None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` making the child receive ``sig`` when the forking thread of this process dies."""
    parent = os.getpid()
    prctl = _PRCTL

    def preexec() -> None:
        if prctl is None:
            return
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            # The parent is already gone (we were re-parented before prctl): do not start at all.
            os._exit(1)

    return preexec
