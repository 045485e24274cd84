"""A fake /sys/class/hidraw and /dev with a keyboard and three FIDO keys, for hidraw and doctor tests."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# A YubiKey's FIDO interface, and a keyboard: real report descriptors.
FIDO_DESCRIPTOR = bytes.fromhex("06d0f10901a1010920150026ff007508954081020921150026ff00750895409102c0")
KEYBOARD_DESCRIPTOR = bytes.fromhex(
    "05010906a101050719e029e71500250175019508810295017508810195057501050819012905910295017503910195"
    "067508150025650507190029658100c0"
)


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
