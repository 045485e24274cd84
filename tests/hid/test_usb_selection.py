"""Several keys plugged in: keyctl asks for a touch and uses the key touched (authenticatorSelection).
USB enumeration is faked at fido2.hid.list_devices; the keys are virtual authenticators over UDP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fido2.ctap2.base import Ctap2
from fido2.hid import CtapHidDevice

from keyctl.authenticator import PresenceMode, VirtualAuthenticator, new_state
from keyctl.errors import ExitCode, NoDevice, PasskeyTimeout
from keyctl.hid import open_device
from keyctl.hid.udp import UdpServer, open_udp


@pytest.fixture
def plug_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[bytes]]]:
    servers: list[UdpServer] = []

    def plug(*presences: PresenceMode) -> list[bytes]:
        states = [new_state(presence=p, presence_timeout_s=20.0) for p in presences]
        for state in states:
            servers.append(UdpServer(VirtualAuthenticator(state), "127.0.0.1", 0).start())
        devices = [open_udp(*server.address) for server in servers]
        import fido2.hid

        monkeypatch.setattr(fido2.hid, "list_devices", lambda: iter(devices))
        return [s.aaguid for s in states]

    yield plug
    for server in servers:
        server.stop()


def _aaguid(device: CtapHidDevice) -> bytes:
    return bytes(Ctap2(device).info.aaguid)


def test_the_touched_key_is_used_and_the_other_cancelled(plug_in: Callable[..., list[bytes]]) -> None:
    waiting, touched = plug_in(PresenceMode.TIMEOUT, PresenceMode.AUTO)
    started = time.monotonic()
    device = open_device("usb")
    assert _aaguid(device) == touched != waiting
    assert time.monotonic() - started < 10  # the untouched key was cancelled, not waited out


def test_no_key_touched(plug_in: Callable[..., list[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    from keyctl.hid import usb

    monkeypatch.setattr(usb, "SELECTION_TIMEOUT_S", 1.0)
    plug_in(PresenceMode.DENY, PresenceMode.TIMEOUT)
    with pytest.raises(PasskeyTimeout, match="no security key was touched"):
        open_device("usb")


@pytest.mark.parametrize(
    ("system", "advice"), [("linux", "udev rules"), ("win32", "terminal run as administrator")]
)
def test_no_key_found_says_what_to_do_on_this_system(
    system: str, advice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fido2.hid.list_devices", lambda: iter(()))
    monkeypatch.setattr("sys.platform", system)
    with pytest.raises(NoDevice) as raised:
        open_device("usb")
    assert raised.value.exit_code == ExitCode.NO_DEVICE
    assert advice in raised.value.remedy
