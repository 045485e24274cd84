"""Real security keys over USB HID, through fido2's own hidraw backend."""

from __future__ import annotations

from fido2.hid import CtapHidDevice

from keyctl.errors import InvalidInput, NoDevice

UDEV_REMEDY = (
    "plug in a FIDO2 key; on Linux, non-root users need udev rules: "
    "sudo cp scripts/udev/*.rules /etc/udev/rules.d/ && sudo udevadm control --reload && "
    "sudo udevadm trigger (then re-plug the key)"
)


def open_usb(path: str | None) -> CtapHidDevice:
    from fido2.hid import list_devices, open_device

    if path is not None:
        try:
            return open_device(path)
        except (OSError, ValueError) as error:
            raise NoDevice(f"No compatible device found at {path} ({error})", UDEV_REMEDY) from None
    devices = list(list_devices())
    if not devices:
        raise NoDevice("No compatible device found (no FIDO key, or no permission to open it)", UDEV_REMEDY)
    if len(devices) > 1:
        paths = ", ".join(str(d.descriptor.path) for d in devices)
        for device in devices:
            device.close()
        raise InvalidInput(
            f"more than one FIDO key is plugged in ({paths})", "pick one with --device usb:PATH"
        )
    return devices[0]
