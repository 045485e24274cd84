"""keyctl.fileio.FileLock: exclusive across processes and threads, re-entrant, bounded wait."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keyctl.fileio import FileLock

HOLD = """
import sys, time
from pathlib import Path
from keyctl.fileio import FileLock
with FileLock(Path(sys.argv[1]), timeout=5):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_another_process_waits_and_then_times_out(tmp_path: Path) -> None:
    path = tmp_path / ".x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="stayed locked"), FileLock(path, timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
        with FileLock(path, timeout=10):  # released when the holder leaves its block
            pass
        assert holder.wait(10) == 0
    finally:
        holder.kill()
        holder.wait()
    assert path.stat().st_mode & 0o777 == 0o600


def test_it_is_re_entrant_in_its_thread_and_exclusive_between_threads(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / ".x.lock", timeout=0.2)
    inside: list[str] = []

    def other() -> None:
        try:
            with lock:
                inside.append("other")
        except TimeoutError:
            inside.append("timed out")

    with lock, lock:
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert inside == ["timed out"]
    other()
    assert inside == ["timed out", "other"]
