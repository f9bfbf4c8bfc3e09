"""A streaming replica of an embedded test PostgreSQL, made with the pgserver wheel's own pg_basebackup.

The primary needs nothing changed: PostgreSQL 16's defaults (wal_level=replica, max_wal_senders=10) and
initdb's pg_hba.conf (``host replication all 127.0.0.1/32 trust`` under --auth=trust) already allow a
replication connection from loopback. ``pg_basebackup -R`` writes standby.signal and primary_conninfo,
so the copy starts as a hot standby that streams from the primary.
"""

import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from telemetry_core.embedded import EmbeddedServer, _postgres_bin, _run_as, start_postgres


def start_replica(primary_port: int, data_dir: Path, deadline_s: float = 60.0) -> EmbeddedServer:
    """Copy the primary on ``primary_port`` into ``data_dir/pgdata`` and start it as its streaming replica.

    Returns once the replica's WAL receiver streams (replay is then at most a moment behind).
    """
    user = _run_as()  # PostgreSQL refuses root: the copy must belong to the user that will run it
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        shutil.chown(data_dir, user, user)
    pgdata = data_dir / "pgdata"
    done = subprocess.run(
        [str(_postgres_bin() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
         "-D", str(pgdata), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
        check=False, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=deadline_s,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pg_basebackup failed ({done.returncode}): {done.stderr.strip()}")
    replica = start_postgres(data_dir, durable=False, deadline_s=deadline_s)
    try:
        _wait_streaming(replica.url, deadline_s)
    except BaseException:
        replica.kill()
        raise
    return replica


def _wait_streaming(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
        if row is not None and row[0] == "streaming":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replica's WAL receiver is {row[0] if row else 'not running'}, not streaming")
        time.sleep(0.05)


def replay_paused(url: str, paused: bool) -> None:
    """Pause (or resume) WAL replay on the replica at ``url`` and wait until it is in that state.

    While paused the replica keeps receiving WAL but shows nothing newer: what a lagging replica looks like.
    """
    call = "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"
    want = "paused" if paused else "not paused"
    deadline = time.monotonic() + 10.0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(call)
        # pg_wal_replay_pause() only requests the pause: replay stops at its next record.
        while (state := conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()) and state[0] != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replay is {state[0]!r}, not {want!r}, after 10 s")
            time.sleep(0.01)
