"""The throwaway PostgreSQL cluster: a real server, reachable only through its private socket, and gone
(no process, no directory) once stopped."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.postgres import Cluster, running

REPO = Path(__file__).resolve().parents[3]


def _postmaster_pid(cluster: Cluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


def test_a_cluster_serves_fresh_databases_on_a_private_socket_and_leaves_nothing_when_stopped() -> None:
    cluster = Cluster()
    try:
        pid = _postmaster_pid(cluster)
        assert running(pid)
        first, second = cluster.database(), cluster.database()
        assert first != second
        with psycopg.connect(first) as connection:
            version = connection.execute("SHOW server_version").fetchone()
            tables = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
            listen = connection.execute("SHOW listen_addresses").fetchone()
        assert version is not None
        assert int(version[0].split(".")[0]) >= 13
        assert tables == (0,)
        assert listen == ("",)  # no TCP port at all
        mode = stat.S_IMODE(cluster.dir.stat().st_mode)
        assert mode & 0o077 == 0, oct(mode)
        if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster runs as nobody
            owner = subprocess.run(["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True)
            assert owner.stdout.strip() == "nobody"
    finally:
        cluster.stop()
    assert not cluster.dir.exists()
    assert not running(pid), f"postmaster {pid} still running after stop()"


def test_a_cluster_whose_test_process_is_killed_is_stopped_by_its_watchdog() -> None:
    """SIGKILL leaves no teardown and no atexit: the watchdog still stops the cluster and removes it."""
    script = "from tests.postgres import Cluster; c = Cluster(); print(c.dir, flush=True); input()"
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stdout is not None
    directory = Path(process.stdout.readline().strip())
    pid = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    assert running(pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while (running(pid) or directory.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(pid), f"postmaster {pid} outlived the killed test process"
    assert not directory.exists()
