"""Power as a control: power cycles, the reset window, reset ending PIN_AUTH_BLOCKED (issue #16 item 4).

In-process and over UDP through fido2's Ctap2/ClientPin, and end to end against `keyctl virtual serve`
in its own process, power-cycled by `keyctl virtual power-cycle` and by SIGUSR1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.hid import CtapHidDevice

from keyctl.authenticator import FakeClock, VirtualAuthenticator, new_state, store
from keyctl.authenticator.ports import UvMode
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from tests.authenticator.conftest import Transport
from tests.conftest import run_keyctl

ERR = CtapError.ERR
PIN = "123456"


def code(action: Callable[[], object]) -> int:
    with pytest.raises(CtapError) as raised:
        action()
    return int(raised.value.code)


def block_pin_auth(device: CtapHidDevice) -> None:
    """Three wrong PINs in a row: PIN_AUTH_BLOCKED until a power cycle."""
    client_pin = ClientPin(Ctap2(device))
    assert code(lambda: client_pin.get_pin_token("0000")) == ERR.PIN_INVALID
    assert code(lambda: client_pin.get_pin_token("0000")) == ERR.PIN_INVALID
    assert code(lambda: client_pin.get_pin_token("0000")) == ERR.PIN_AUTH_BLOCKED
    assert code(lambda: client_pin.get_pin_token(PIN)) == ERR.PIN_AUTH_BLOCKED


def pin_works(device: CtapHidDevice) -> bool:
    return bool(ClientPin(Ctap2(device)).get_pin_token(PIN))


def test_reset_clears_the_consecutive_mismatch_state(transport: Transport) -> None:
    authenticator = VirtualAuthenticator(new_state(uv=UvMode.NONE), pin_code=PIN)
    device = transport(authenticator)
    block_pin_auth(device)
    ctap = Ctap2(device)
    ctap.reset()
    ClientPin(ctap).set_pin(PIN)
    assert ClientPin(ctap).get_pin_retries()[1] is False  # powerCycleState
    assert pin_works(device)


def test_reset_window_closes_and_a_power_cycle_reopens_it(transport: Transport) -> None:
    clock = FakeClock()
    authenticator = VirtualAuthenticator(clock=clock)
    ctap = Ctap2(transport(authenticator))
    clock.advance(10.5)
    assert code(ctap.reset) == ERR.NOT_ALLOWED
    authenticator.power_cycle()
    ctap.reset()


def test_reset_window_can_be_set_or_left_open(transport: Transport) -> None:
    clock = FakeClock()
    short = Ctap2(transport(VirtualAuthenticator(clock=clock, reset_window_s=1.0)))
    always = Ctap2(transport(VirtualAuthenticator(clock=clock, reset_window_s=None)))
    clock.advance(3600)
    assert code(short.reset) == ERR.NOT_ALLOWED
    always.reset()


# --- end to end: keyctl virtual serve in its own process ---------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[subprocess.Popen[str], Any]]]:
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    monkeypatch.setenv("CI_PIN", PIN)
    assert run_keyctl(["virtual", "create", "ci", "--uv", "none", "--pin-env", "CI_PIN"]).exit_code == 0
    servers: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> tuple[subprocess.Popen[str], Any]:
        port = _free_udp_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "keyctl", "virtual", "serve", "ci", "--udp", f"127.0.0.1:{port}", *extra],
            stderr=subprocess.PIPE,
            text=True,
        )
        servers.append(server)
        assert server.stderr is not None
        assert "serving virtual:ci" in server.stderr.readline()
        return server, open_device(f"udp:127.0.0.1:{port}")

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)


def _wait_for_line(server: subprocess.Popen[str], text: str) -> None:
    assert server.stderr is not None
    line = server.stderr.readline()
    assert text in line, line


def test_power_cycle_command_reaches_the_running_server(served: Any) -> None:
    server, device = served()
    block_pin_auth(device)
    result = run_keyctl(["virtual", "power-cycle", "ci"])
    assert result.exit_code == 0, result.stderr
    assert str(server.pid) in result.stderr
    _wait_for_line(server, "power-cycled")
    assert pin_works(device)  # the same UDP connection carries on after the power cycle


def test_sigusr1_power_cycles_the_server(served: Any) -> None:
    server, device = served()
    block_pin_auth(device)
    os.kill(server.pid, signal.SIGUSR1)
    _wait_for_line(server, "power-cycled")
    assert pin_works(device)


def test_served_reset_window(served: Any) -> None:
    # the window must hold the power-cycle round trip on a loaded 2-core machine (0.3 s did not)
    server, device = served("--reset-window", "1")
    time.sleep(1.2)
    assert code(Ctap2(device).reset) == ERR.NOT_ALLOWED
    assert run_keyctl(["virtual", "power-cycle", "ci"]).exit_code == 0
    _wait_for_line(server, "power-cycled")
    Ctap2(device).reset()
    _, device2 = served("--reset-window", "always")
    time.sleep(0.5)
    Ctap2(device2).reset()


def test_power_cycle_without_a_server_and_bad_reset_window(served: Any) -> None:
    result = run_keyctl(["virtual", "power-cycle", "ci"])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "not being served" in result.stderr
    missing = run_keyctl(["virtual", "power-cycle", "nope"])
    assert missing.exit_code == ExitCode.NOT_FOUND
    bad = run_keyctl(["virtual", "serve", "ci", "--reset-window", "soon"])
    assert bad.exit_code == ExitCode.INVALID_INPUT
    assert "--reset-window" in bad.stderr


def test_a_stale_registration_is_never_signalled(served: Any) -> None:
    """A pid left behind by a killed server, now reused by another process, is not signalled."""
    server, _ = served()
    server.kill()
    server.wait(timeout=10)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        entry = store.virtual_dir() / ".ci.serving" / str(server.pid)
        assert entry.exists()  # kill -9 left it behind
        entry.rename(entry.with_name(str(bystander.pid)))  # as if the pid had been reused
        result = run_keyctl(["virtual", "power-cycle", "ci"])
        assert result.exit_code == ExitCode.NOT_FOUND
        assert bystander.poll() is None  # not killed by a SIGUSR1 it has no handler for
    finally:
        bystander.kill()
        bystander.wait()
