"""The ``prompt`` presence policy end to end: a keyctl process on a pseudo-terminal asks for the touch."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from keyctl.errors import ExitCode
from tests.conftest import run_keyctl

PIN_ENV = {"VIRTUAL_PIN": "123456"}


def _create_prompting_key(name: str) -> None:
    created = run_keyctl(
        ["virtual", "create", name, "--presence", "prompt", "--pin-env", "VIRTUAL_PIN"], env=PIN_ENV
    )
    assert created.exit_code == 0, created.stderr


def _reset_answering(name: str, answer: str) -> tuple[int, str]:
    """Run `keyctl key reset` with stdin/stderr on a pty; type ``answer`` at the touch prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "key", "reset", "--yes", "--device", f"virtual:{name}"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"[y/N]" not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no touch prompt; the terminal showed: {seen.decode(errors='replace')}"
            if select.select([controller], [], [], remaining)[0]:
                seen += os.read(controller, 4096)
        os.write(controller, answer.encode() + b"\n")
        code = process.wait(timeout=30)
        while select.select([controller], [], [], 0.2)[0]:
            try:
                seen += os.read(controller, 4096)
            except OSError:  # the process closed the terminal
                break
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    return code, seen.decode(errors="replace")


def _pin_is_set(name: str) -> bool:
    info = run_keyctl(["key", "info", "--device", f"virtual:{name}", "--json"])
    assert info.exit_code == 0, info.stderr
    return bool(json.loads(info.stdout)["pin_set"])


@pytest.mark.parametrize("answer", ["y", "yes"])
def test_a_yes_at_the_terminal_is_the_touch(answer: str) -> None:
    _create_prompting_key("prompted")
    assert _pin_is_set("prompted")

    code, terminal = _reset_answering("prompted", answer)

    assert "Touch the virtual key to reset" in terminal
    assert code == 0, terminal
    assert not _pin_is_set("prompted")


def test_a_no_at_the_terminal_refuses_and_changes_nothing() -> None:
    _create_prompting_key("refused")

    code, terminal = _reset_answering("refused", "n")

    assert code == ExitCode.PASSKEY_CANCELED, terminal
    assert _pin_is_set("refused")


def test_without_a_terminal_nobody_can_touch() -> None:
    _create_prompting_key("headless")

    result = run_keyctl(["key", "reset", "--yes", "--device", "virtual:headless"], stdin="y\n")

    assert result.exit_code == ExitCode.PASSKEY_CANCELED, result.stderr
    assert _pin_is_set("headless")


def test_u2f_through_a_served_key_asks_without_holding_the_request() -> None:
    """`keyctl virtual serve` on a terminal, reached by fido2's Ctap1 over UDP: U2F_REGISTER is answered
    0x6985 at once while the terminal asks; after the 'y' the host's retry gets the registration."""
    from fido2.ctap1 import ApduError, Ctap1, RegistrationData

    from keyctl.hid import open_device
    from tests.authenticator.test_power import _free_udp_port

    _create_prompting_key("u2f-prompted")
    port = _free_udp_port()
    controller, terminal = pty.openpty()
    command = [
        sys.executable,
        "-m",
        "keyctl",
        "virtual",
        "serve",
        "u2f-prompted",
        "--udp",
        f"127.0.0.1:{port}",
    ]
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""

    def wait_for(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while text not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r}; the terminal showed: {seen.decode(errors='replace')}"
            if select.select([controller], [], [], remaining)[0]:
                seen += os.read(controller, 4096)

    challenge, application = b"c" * 32, b"a" * 32
    try:
        wait_for(b"serving virtual:u2f-prompted")
        ctap1 = Ctap1(open_device(f"udp:127.0.0.1:{port}"))
        started = time.monotonic()
        with pytest.raises(ApduError) as refused:
            ctap1.register(challenge, application)
        assert refused.value.code == 0x6985
        assert time.monotonic() - started < 5  # not held until the person answers
        wait_for(b"Touch the virtual key to register this key (U2F)? [y/N]")
        os.write(controller, b"y\n")
        registration: RegistrationData | None = None
        deadline = time.monotonic() + 30
        while registration is None:  # the host's retries, as a browser's U2F polling
            assert time.monotonic() < deadline
            try:
                registration = ctap1.register(challenge, application)
            except ApduError as error:
                assert error.code == 0x6985  # noqa: PT017
                time.sleep(0.1)
        registration.verify(application, challenge)
    finally:
        process.kill()
        process.wait()
        os.close(controller)
