from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fido2.hid.base import HidDescriptor

from keyctl.authenticator import VirtualAuthenticator, new_state, store
from keyctl.hid.udp import UdpServer

LISTED_FIELDS = {
    "spec",
    "kind",
    "product_name",
    "vendor_id",
    "product_id",
    "serial",
    "aaguid",
    "model",
    "problem",
}


@pytest.fixture
def simulator() -> Iterator[tuple[str, VirtualAuthenticator]]:
    authenticator = VirtualAuthenticator()
    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    host, port = server.address
    yield f"udp:{host}:{port}", authenticator
    server.stop()


@pytest.fixture
def usb_descriptor(monkeypatch: pytest.MonkeyPatch) -> HidDescriptor:
    import fido2.hid

    descriptor = HidDescriptor(
        "/dev/hidraw-keyctl-test", 0x1050, 0x0407, 64, 64, "YubiKey OTP+FIDO+CCID", "123456"
    )
    monkeypatch.setattr(fido2.hid, "list_descriptors", lambda: [descriptor])
    return descriptor


def test_lists_usb_virtual_and_simulators(
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    simulator: tuple[str, VirtualAuthenticator],
    usb_descriptor: HidDescriptor,
) -> None:
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", store.new_ci_key())
    state = new_state()
    store.create("ci", state)
    spec, _ = simulator
    result = cli("key", "list", "--json")
    assert result.exit_code == 0, result.stderr
    keys = json.loads(result.stdout)
    assert all(set(k) == LISTED_FIELDS for k in keys)
    by_spec = {k["spec"]: k for k in keys}
    assert set(by_spec) == {"usb:/dev/hidraw-keyctl-test", "virtual:ci"}
    usb = by_spec["usb:/dev/hidraw-keyctl-test"]
    assert (usb["kind"], usb["vendor_id"], usb["serial"], usb["aaguid"]) == ("usb", 0x1050, "123456", None)
    assert usb["problem"]  # present but not openable: the reason is shown
    assert by_spec["virtual:ci"]["aaguid"] == str(__import__("uuid").UUID(bytes=state.aaguid))
    table = cli("key", "list")
    assert "virtual:ci" in table.stdout
    assert "YubiKey" in table.stdout
    assert "123456" in table.stdout
    # -d picks the devices, as everywhere: a simulator (which cannot be discovered) and a stored one.
    chosen = json.loads(cli("key", "list", "-d", spec, "-d", "virtual:ci", "--json").stdout)
    assert [(k["spec"], k["kind"], k["problem"]) for k in chosen] == [
        (spec, "udp", None),
        ("virtual:ci", "virtual", None),
    ]


def test_nothing_to_list(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import fido2.hid

    monkeypatch.setattr(fido2.hid, "list_descriptors", lambda: [])
    result = cli("key", "list")
    assert result.exit_code == 0
    assert "No authenticators found" in result.stderr
    assert json.loads(cli("key", "list", "--json").stdout) == []
