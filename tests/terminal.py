"""A keyctl process on a real pseudo-terminal: it is the process's controlling terminal, so getpass reads
from it with echo off and a typed Ctrl-C reaches the process as SIGINT, as in a technician's shell."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from collections.abc import Sequence


class TerminalSession:
    """``keyctl ARGS`` on a pseudo-terminal, or with ``program`` that program (an interactive shell)."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str] | None = None, program: Sequence[str] = ()
    ) -> None:
        environment = {**os.environ, "TERM": "dumb", **(env or {})}
        argv = [*program, *args] if program else [sys.executable, "-m", "keyctl", *args]
        pid, fd = pty.fork()  # the child: new session, the pty as controlling terminal and stdio
        if pid == 0:
            os.execvpe(argv[0], argv, environment)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.exit_code: int | None = None

    def expect(self, text: str, timeout: float = 30) -> None:
        """Read the terminal until ``text`` has appeared since the start."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} on the terminal; it showed: {self.text}"
            if select.select([self.fd], [], [], remaining)[0] and not self._read():
                raise AssertionError(f"the process closed the terminal before {text!r}: {self.text}")

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once the process has ended (its remaining output read)."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            if select.select([self.fd], [], [], 0.1)[0]:
                self._read()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"still running after {timeout} s; the terminal showed: {self.text}")
        while select.select([self.fd], [], [], 0.1)[0] and self._read():
            pass
        os.close(self.fd)
        return self.exit_code

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the process has closed the terminal
            return False
        self.output += chunk
        return bool(chunk)
