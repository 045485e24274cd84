"""Power as a control: which processes serve a stored virtual authenticator, and power-cycling them.

`keyctl virtual serve NAME` (and `attach NAME`) registers itself while it runs (one file per process under
``virtual/NAME.serving/``, holding its pid and the process start time) and power-cycles its authenticator
on SIGUSR1; ``power_cycle(NAME)`` signals every live server of that name. The start time is compared
before signalling, so a pid the system has since reused for another program is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from keyctl.authenticator import store
from keyctl.errors import NotFound, NotSupported

POWER_CYCLE_SIGNAL = "SIGUSR1"


def _serving_dir(name: str) -> Path:
    return store.virtual_dir() / f".{store.check_name(name)}.serving"


def _start_time(pid: int) -> str:
    """What tells this process from a later one with the same pid (Linux: start time in clock ticks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


@contextlib.contextmanager
def serving(name: str) -> Iterator[None]:
    """Register this process as serving ``name`` for as long as the block runs."""
    directory = _serving_dir(name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = directory / str(os.getpid())
    entry.write_text(_start_time(os.getpid()))
    try:
        yield
    finally:
        entry.unlink(missing_ok=True)


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours
        return False
    return _start_time(pid) == started


def power_cycle(name: str) -> list[int]:
    """Power-cycle every running server of ``name``; the pids signalled. Stale entries are removed."""
    if sys.platform == "win32":
        raise NotSupported("power-cycle needs POSIX signals", "restart 'keyctl virtual serve' instead")
    store.require(name)
    signalled = []
    directory = _serving_dir(name)
    for entry in sorted(directory.iterdir()) if directory.is_dir() else []:
        try:
            pid, started = int(entry.name), entry.read_text()
        except (ValueError, OSError):
            continue
        if not _alive(pid, started):
            entry.unlink(missing_ok=True)
            continue
        os.kill(pid, getattr(signal, POWER_CYCLE_SIGNAL))
        signalled.append(pid)
    if not signalled:
        raise NotFound(
            f"virtual authenticator {name!r} is not being served",
            f"start 'keyctl virtual serve {name}' (or 'attach {name}'); without a server, every process "
            f"that opens virtual:{name} starts powered up anyway",
        )
    return signalled
