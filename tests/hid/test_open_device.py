"""keyctl.hid.open_device: every device spec keyctl accepts, ending in fido2's CtapHidDevice."""

from __future__ import annotations

import pytest
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice

from keyctl.authenticator import VirtualAuthenticator, new_state, store
from keyctl.errors import InvalidInput, NoDevice, NotFound
from keyctl.hid import open_device
from keyctl.hid.spec import UdpSpec, UsbSpec, VirtualSpec, parse
from keyctl.hid.udp import UdpServer


@pytest.fixture
def ci_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = store.new_ci_key()
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, key)
    return key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("virtual:ci", VirtualSpec("ci")),
        ("udp:127.0.0.1:8111", UdpSpec("127.0.0.1", 8111)),
        ("udp:[::1]:8111", UdpSpec("::1", 8111)),
        ("usb", UsbSpec(None)),
        ("usb:/dev/hidraw3", UsbSpec("/dev/hidraw3")),
    ],
)
def test_specs_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "virtual:", "udp:localhost", "udp:host:0", "udp:host:99999", "bluetooth", "nfc:x"]
)
def test_unknown_or_malformed_specs_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="device"):
        open_device(text)


def test_virtual_spec_opens_the_stored_authenticator(ci_key: str) -> None:
    state = new_state()
    store.create("ci", state)
    device = open_device("virtual:ci")
    assert isinstance(device, CtapHidDevice)
    info = Ctap2(device).get_info()
    assert bytes(info.aaguid) == state.aaguid


def test_virtual_spec_for_a_missing_authenticator_is_not_found(ci_key: str) -> None:
    with pytest.raises(NotFound, match="nope"):
        open_device("virtual:nope")


def test_udp_spec_reaches_a_simulator() -> None:
    authenticator = VirtualAuthenticator()
    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    try:
        host, port = server.address
        device = open_device(f"udp:{host}:{port}")
        assert device.ping(b"hello over udp") == b"hello over udp"
        assert "FIDO_2_1" in Ctap2(device).get_info().versions
    finally:
        server.stop()


def test_udp_without_a_simulator_is_no_device() -> None:
    import socket
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(NoDevice) as raised:
        open_device(f"udp:127.0.0.1:{port}")
    assert "keyctl virtual serve" in raised.value.remedy
    assert time.monotonic() - started < 10


def test_usb_without_a_key_points_at_the_udev_rules() -> None:
    from fido2.hid import list_devices

    with pytest.raises(NoDevice) as raised:
        open_device("usb:/dev/does-not-exist")
    assert "keyctl doctor --install-udev-rules" in raised.value.remedy
    plugged_in = list(list_devices())
    if len(plugged_in) == 1:  # a developer's machine with one key
        assert isinstance(open_device("usb"), CtapHidDevice)
    elif not plugged_in:  # CI: no key
        with pytest.raises(NoDevice, match="No compatible device"):
            open_device("usb")


def test_udp_server_refuses_a_non_loopback_bind() -> None:
    with pytest.raises(InvalidInput, match="non-loopback"):
        UdpServer(VirtualAuthenticator(), "0.0.0.0", 0)
