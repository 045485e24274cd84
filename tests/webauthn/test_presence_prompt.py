"""`--presence prompt` on a real pseudo-terminal: a stored virtual key asks "[y/N]" in the keyctl process
that runs the ceremony, and the touch spinner must not draw over the question while it waits."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_keyctl
from tests.webauthn.conftest import Reference


def test_the_spinner_leaves_the_question_alone(
    reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", run_keyctl(["virtual", "ci-key"]).stdout.strip())
    assert run_keyctl(["virtual", "create", "p", "--presence", "prompt"]).exit_code == 0
    jar = tmp_path / "jar"
    with reference.account("pat@example.com") as session:
        session.save_cookies(jar)
    args = ["register", "--server", reference.url, "--user", "pat@example.com", "--cookie-jar", str(jar),
            "--device", "virtual:p"]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "keyctl", *args])
    output, asked = b"", 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child is gone
            break
        output += chunk
        if output.count(b"[y/N]") > asked:
            asked += 1
            time.sleep(1.0)  # long enough for a spinner to redraw several times
            os.write(fd, b"y\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output
    # One touch per ceremony: the UV token's touch serves the makeCredential it authorizes (CTAP 2.1
    # §6.5.5.7.3 step 13), as a real key with built-in UV asks once.
    assert asked == 1, output
    # The answer follows each question directly: no spinner frame was drawn in between.
    assert output.count(b"[y/N] y\r\n") == asked, output
    assert b"registered a passkey for pat@example.com" in output
