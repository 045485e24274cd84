"""What Linux shows of FIDO security keys: hidraw nodes (sysfs) and USB devices of FIDO vendors (pyusb).

sysfs is readable by everyone even when /dev/hidrawN is not, so keyctl can tell "a key is plugged in
but you may not open it" (udev rules missing) from "no key". The roots are parameters so tests can
point them at a fake tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# USB vendor ids of FIDO key makers, to notice a key whose FIDO interface is off or absent.
FIDO_VENDORS: dict[int, str] = {
    0x1050: "Yubico",
    0x096E: "Feitian",
    0x20A0: "Nitrokey",
    0x1209: "SoloKeys/pid.codes",
    0x0483: "SoloKeys (STM)",
    0x18D1: "Google (Titan)",
    0x349E: "Token2",
    0x2CCF: "HyperFIDO",
    0x1EA8: "Thetis",
    0x047D: "Kensington",
    0x311F: "TrustKey",
    0x32A3: "Identiv",
    0x1D50: "OnlyKey",
}


@dataclass(frozen=True)
class HidrawNode:
    name: str  # hidraw3
    dev_path: str  # /dev/hidraw3
    vendor_id: int
    product_id: int
    product_name: str
    is_fido: bool
    accessible: bool  # this user may open it for reading and writing


@dataclass(frozen=True)
class UsbDevice:
    vendor_id: int
    product_id: int
    product_name: str


def is_fido_descriptor(descriptor: bytes) -> bool:
    """True when a HID report descriptor declares the FIDO usage page (0xF1D0) and usage CTAPHID (1)."""
    from fido2.hid.base import parse_report_descriptor

    try:
        parse_report_descriptor(descriptor)
    except (ValueError, IndexError, TypeError):
        return False
    return True


def _uevent(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def scan_hidraw(
    sys_root: Path = Path("/sys/class/hidraw"), dev_root: Path = Path("/dev")
) -> list[HidrawNode]:
    nodes: list[HidrawNode] = []
    if not sys_root.is_dir():
        return nodes
    for entry in sorted(sys_root.iterdir(), key=lambda p: p.name):
        device = entry / "device"
        try:
            descriptor = (device / "report_descriptor").read_bytes()
        except OSError:
            continue
        uevent = _uevent(device / "uevent")
        try:
            _bus, vendor, product = uevent.get("HID_ID", "0:0:0").split(":")
            vendor_id, product_id = int(vendor, 16), int(product, 16)
        except ValueError:
            vendor_id = product_id = 0
        dev_path = dev_root / entry.name
        nodes.append(
            HidrawNode(
                name=entry.name,
                dev_path=str(dev_path),
                vendor_id=vendor_id,
                product_id=product_id,
                product_name=uevent.get("HID_NAME", ""),
                is_fido=is_fido_descriptor(descriptor),
                accessible=os.access(dev_path, os.R_OK | os.W_OK, effective_ids=True),
            )
        )
    return nodes


def scan_usb() -> list[UsbDevice] | None:
    """USB devices of FIDO vendors, or None when pyusb has no backend (libusb missing)."""
    import usb.core

    try:
        devices = list(usb.core.find(find_all=True) or [])
    except usb.core.NoBackendError:
        return None
    found: list[UsbDevice] = []
    for device in devices:
        if device.idVendor not in FIDO_VENDORS:
            continue
        try:
            name = str(device.product or "")
        except (ValueError, usb.core.USBError, NotImplementedError):
            name = ""  # reading strings needs access to the device; the ids are enough
        found.append(UsbDevice(device.idVendor, device.idProduct, name))
    return found


def keys_without_fido_interface(
    usb_devices: Iterable[UsbDevice], nodes: Iterable[HidrawNode]
) -> list[UsbDevice]:
    """USB devices of FIDO vendors with no FIDO hidraw node: FIDO disabled, or the key in another mode."""
    fido_ids = {(n.vendor_id, n.product_id) for n in nodes if n.is_fido}
    return [d for d in usb_devices if (d.vendor_id, d.product_id) not in fido_ids]
