from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyctl.doctor import hidraw

# A YubiKey's FIDO interface, and a keyboard: real report descriptors.
FIDO_DESCRIPTOR = bytes.fromhex("06d0f10901a1010920150026ff007508954081020921150026ff00750895409102c0")
KEYBOARD_DESCRIPTOR = bytes.fromhex(
    "05010906a101050719e029e71500250175019508810295017508810195057501050819012905910295017503910195"
    "067508150025650507190029658100c0"
)
RULES = Path(__file__).resolve().parents[2] / "scripts" / "udev" / "70-keyctl-fido.rules"


def test_descriptor_detection() -> None:
    assert hidraw.is_fido_descriptor(FIDO_DESCRIPTOR)
    assert not hidraw.is_fido_descriptor(KEYBOARD_DESCRIPTOR)
    assert not hidraw.is_fido_descriptor(FIDO_DESCRIPTOR[:5])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_descriptor_detection_never_raises(data: bytes) -> None:
    assert hidraw.is_fido_descriptor(data) in (True, False)


def _add_node(
    sys_root: Path, dev_root: Path, name: str, descriptor: bytes, hid_id: str, hid_name: str, mode: int | None
) -> None:
    device = sys_root / name / "device"
    device.mkdir(parents=True)
    (device / "report_descriptor").write_bytes(descriptor)
    (device / "uevent").write_text(f"DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME={hid_name}\n")
    if mode is not None:
        node = dev_root / name
        node.write_bytes(b"")
        node.chmod(mode)


@pytest.fixture
def fake_os() -> Iterator[tuple[Path, Path]]:
    """A world-readable fake /sys/class/hidraw and /dev (so an unprivileged user can scan it too)."""
    top = Path(tempfile.mkdtemp(prefix="keyctl-fake-os-"))
    top.chmod(0o755)
    sys_root, dev_root = top / "sys", top / "dev"
    sys_root.mkdir()
    dev_root.mkdir()
    _add_node(
        sys_root,
        dev_root,
        "hidraw0",
        KEYBOARD_DESCRIPTOR,
        "0003:0000046D:0000C31C",
        "Logitech Keyboard",
        0o600,
    )
    _add_node(
        sys_root, dev_root, "hidraw1", FIDO_DESCRIPTOR, "0003:00001050:00000407", "Yubico YubiKey", 0o666
    )
    _add_node(
        sys_root, dev_root, "hidraw2", FIDO_DESCRIPTOR, "0003:0000096E:00000858", "Feitian ePass", 0o600
    )
    _add_node(sys_root, dev_root, "hidraw3", FIDO_DESCRIPTOR, "garbage", "No Node Key", None)
    for path in top.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
        elif "report_descriptor" in path.name or path.name == "uevent":
            path.chmod(0o644)
    yield sys_root, dev_root
    subprocess.run(["rm", "-rf", str(top)], check=True)


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
