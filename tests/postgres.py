"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's ``postgresql`` binaries, ``initdb`` in a
temporary directory, listening on a Unix socket in that directory only (no TCP port), stopped and deleted
when done. Nothing is left running: ``stop()`` runs from the fixture's teardown and, should that be skipped
(an interrupted run), from ``atexit``; should the process die without either (SIGKILL, a ``timeout``), a
watchdog shell started with the cluster stops it and deletes its directory within a second.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to ``nobody`` (through
``runuser``); otherwise to the user running the tests.
"""

from __future__ import annotations

import atexit
import glob
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "keyctl"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing: run scripts/install-system-deps.sh."""


def _bin_dir() -> Path:
    override = os.environ.get("KEYCTL_TEST_PG_BIN")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresUnavailable(
            "PostgreSQL's initdb was not found: run scripts/install-system-deps.sh (Debian's postgresql)"
        )
    return Path(initdb).resolve().parent


class Cluster:
    """One running cluster; ``database()`` makes a fresh, empty database and returns its URL."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="keyctl-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
            self._as = ["runuser", "-u", "nobody", "--"]
        self._running = False
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",  # only this directory's socket, reachable by the owner and root
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
            # A private socket directory: only the cluster's owner (and root) can reach it.
            options = f"-k {self.dir} -c listen_addresses='' -c fsync=off -c max_connections=200"
            log = str(self.dir / "log")
            self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
            self._running = True
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        stop = shlex.join(
            [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        )
        wait = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.5; done"
        self._watchdog = subprocess.Popen(
            ["sh", "-c", f"{wait}; {stop}; rm -rf {shlex.quote(str(self.dir))}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the tests does not reach it before it is needed
        )

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as, str(self.bin / program), *args], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.dir}"

    def database(self) -> str:
        """A new empty database in this cluster, as a URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server, wait until its process is gone, delete the directory."""
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        if self._running:
            self._running = False
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            subprocess.run(
                [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
            deadline = time.monotonic() + 10
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        shutil.rmtree(self.dir, ignore_errors=True)


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
