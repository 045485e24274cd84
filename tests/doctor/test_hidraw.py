from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyctl.doctor import hidraw

from .conftest import FIDO_DESCRIPTOR, KEYBOARD_DESCRIPTOR

RULES = Path(__file__).resolve().parents[2] / "scripts" / "udev" / "70-keyctl-fido.rules"


def test_descriptor_detection() -> None:
    assert hidraw.is_fido_descriptor(FIDO_DESCRIPTOR)
    assert not hidraw.is_fido_descriptor(KEYBOARD_DESCRIPTOR)
    assert not hidraw.is_fido_descriptor(FIDO_DESCRIPTOR[:5])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_descriptor_detection_never_raises(data: bytes) -> None:
    assert hidraw.is_fido_descriptor(data) in (True, False)


def test_scan_finds_fido_nodes_and_their_ids(fake_os: tuple[Path, Path]) -> None:
    nodes = {n.name: n for n in hidraw.scan_hidraw(*fake_os)}
    assert sorted(nodes) == ["hidraw0", "hidraw1", "hidraw2", "hidraw3"]
    assert not nodes["hidraw0"].is_fido
    yubikey = nodes["hidraw1"]
    assert (yubikey.is_fido, yubikey.vendor_id, yubikey.product_id) == (True, 0x1050, 0x0407)
    assert yubikey.product_name == "Yubico YubiKey"
    assert nodes["hidraw3"].vendor_id == 0
    assert not nodes["hidraw3"].accessible  # no /dev node at all


@contextmanager
def unprivileged() -> Iterator[None]:
    """Root ignores file modes: act as 'nobody' for the duration (effective ids only)."""
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_scan_tells_unreadable_nodes_apart(fake_os: tuple[Path, Path]) -> None:
    with unprivileged():
        access = {n.name: n.accessible for n in hidraw.scan_hidraw(*fake_os)}
    assert access == {"hidraw0": False, "hidraw1": True, "hidraw2": False, "hidraw3": False}


def test_usb_keys_without_a_fido_interface(fake_os: tuple[Path, Path]) -> None:
    nodes = hidraw.scan_hidraw(*fake_os)
    usb = [
        hidraw.UsbDevice(0x1050, 0x0407, "YubiKey OTP+FIDO+CCID"),
        hidraw.UsbDevice(0x1050, 0x0404, "YubiKey CCID only"),
    ]
    assert hidraw.keys_without_fido_interface(usb, nodes) == [usb[1]]


class _FakeUsbDevice(SimpleNamespace):
    @property
    def product(self) -> str:
        if self.name is None:
            raise ValueError("The device has no langid (permission denied)")
        return str(self.name)


def test_scan_usb_keeps_fido_vendors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import usb.core

    devices = [
        _FakeUsbDevice(idVendor=0x1050, idProduct=0x0407, name="YubiKey"),
        _FakeUsbDevice(idVendor=0x046D, idProduct=0xC31C, name="Keyboard"),
        _FakeUsbDevice(idVendor=0x20A0, idProduct=0x42B1, name=None),
    ]
    monkeypatch.setattr(usb.core, "find", lambda find_all: iter(devices))
    assert hidraw.scan_usb() == [
        hidraw.UsbDevice(0x1050, 0x0407, "YubiKey"),
        hidraw.UsbDevice(0x20A0, 0x42B1, ""),
    ]


def test_scan_usb_without_libusb(monkeypatch: pytest.MonkeyPatch) -> None:
    import usb.core

    def no_backend(find_all: bool) -> None:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", no_backend)
    assert hidraw.scan_usb() is None


def _fallback_program() -> str:
    match = re.search(r'PROGRAM="(.*?)", RESULT=="(\w+)"', RULES.read_text())
    assert match, "the fallback PROGRAM rule is missing"
    assert match.group(2) == "06d0f1"
    return match.group(1).replace('\\"', '"').replace("\\\\", "\\")


@pytest.mark.parametrize(
    ("descriptor", "expected"), [(FIDO_DESCRIPTOR, "06d0f1"), (KEYBOARD_DESCRIPTOR, "050109")]
)
def test_udev_fallback_reads_the_usage_page(tmp_path: Path, descriptor: bytes, expected: str) -> None:
    devpath = "/devices/fake/hidraw/hidraw9"
    (tmp_path / devpath.lstrip("/") / "device").mkdir(parents=True)
    (tmp_path / devpath.lstrip("/") / "device" / "report_descriptor").write_bytes(descriptor)
    command = _fallback_program().replace("/sys%p", f"{tmp_path}{devpath}")
    argv = shlex.split(command)
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert output == expected


def test_udev_rule_grants_uaccess_by_usage_page_not_vendor() -> None:
    text = RULES.read_text()
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert any('TAG+="uaccess"' in line and 'ENV{ID_FIDO_TOKEN}=="1"' in line for line in rules)
    assert not any("idVendor" in line for line in rules)
    assert 'LABEL="keyctl_fido_end"' in rules
    assert all(line.count('"') % 2 == 0 for line in rules)
