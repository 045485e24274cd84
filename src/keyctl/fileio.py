"""Crash-safe file writes (a reader sees the old content or the new, never a half-written file) and a
cross-process file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, rename, fsync the dir."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_private(path: Path, flags: int, create: bool = True) -> int:
    """``os.open`` for a file others must not read: created 0600 (``create``), and made 0600 when it
    exists with a looser mode (left by an older release, or made by hand). The descriptor."""
    fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


class FileLock:
    """An exclusive lock shared by processes: ``flock(2)`` on ``path`` (created with ``mode``), waited for
    up to ``timeout`` seconds, then ``TimeoutError``. Re-entrant in the thread holding it; other threads
    of the process wait as other processes do. (The ``filelock`` package did this; its import alone cost
    every process using a stored virtual key ~10 ms of CPU.)"""

    def __init__(self, path: Path, timeout: float, mode: int = 0o600) -> None:
        self.path, self.timeout, self.mode = path, timeout, mode
        self._thread_lock = threading.RLock()
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> FileLock:
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise TimeoutError(f"{self.path} stayed locked for {self.timeout:g} s")
        try:
            if self._depth == 0:
                self._fd = self._locked_fd(deadline)
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._thread_lock.release()

    def _locked_fd(self, deadline: float) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.mode)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"{self.path} stayed locked for {self.timeout:g} s") from None
                    time.sleep(0.01)
        except BaseException:
            os.close(fd)
            raise
