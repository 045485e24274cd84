"""Real security keys over USB HID, through fido2's own hidraw backend."""

from __future__ import annotations

import sys
import threading
import time

from fido2.hid import CtapHidDevice

from keyctl.errors import NoDevice, PasskeyTimeout

SELECTION_TIMEOUT_S = 30.0

UDEV_REMEDY = (
    "plug in a FIDO2 key; on Linux, non-root users need udev rules: "
    "sudo keyctl doctor --install-udev-rules (then re-plug the key)"
)
WINDOWS_REMEDY = (
    "plug in a FIDO2 key; on Windows, raw access to a key (PIN, credentials, reset, config) needs a "
    "terminal run as administrator; register and login reach keys through Windows without it"
)


def _remedy() -> str:
    return WINDOWS_REMEDY if sys.platform == "win32" else UDEV_REMEDY


def open_usb(path: str | None) -> CtapHidDevice:
    from fido2.hid import list_devices, open_device

    if path is not None:
        try:
            return open_device(path)
        except (OSError, ValueError) as error:
            raise NoDevice(f"No compatible device found at {path} ({error})", _remedy()) from None
    devices = list(list_devices())
    if not devices:
        raise NoDevice("No compatible device found (no FIDO key, or no permission to open it)", _remedy())
    if len(devices) > 1:
        return select_by_touch(devices)
    return devices[0]


def select_by_touch(devices: list[CtapHidDevice]) -> CtapHidDevice:
    """Several keys are plugged in: the first one touched is used, the others are cancelled and closed."""
    timeout_s = SELECTION_TIMEOUT_S
    sys.stderr.write(f"{len(devices)} security keys are plugged in: touch the one to use...\n")
    sys.stderr.flush()
    chosen: list[CtapHidDevice] = []
    lock = threading.Lock()
    done = threading.Event()

    def wait_for_touch(device: CtapHidDevice) -> None:
        if _touched(device, done):
            with lock:
                if not chosen:
                    chosen.append(device)
                    done.set()

    threads = [threading.Thread(target=wait_for_touch, args=(d,), daemon=True) for d in devices]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if done.is_set():
            break
    done.set()  # cancels the keys still waiting
    for thread in threads:
        thread.join(2)
    for device in devices:
        if device not in chosen:
            device.close()
    if not chosen:
        raise PasskeyTimeout(
            f"no security key was touched within {timeout_s:g} s",
            "touch the key you want to use, or pick one with --device usb:PATH",
        )
    return chosen[0]


def _touched(device: CtapHidDevice, cancel: threading.Event) -> bool:
    """Wait for a touch on one key; False when it was cancelled, refused, or failed."""
    from fido2.ctap import CtapError
    from fido2.ctap2.base import Ctap2

    try:
        ctap2 = Ctap2(device)
        if "FIDO_2_1" in ctap2.info.versions:
            ctap2.selection(event=cancel)
            return True
        # CTAP 2.0 has no selection command: a makeCredential with an empty pinUvAuthParam waits for a
        # touch and then fails with PIN_NOT_SET or PIN_INVALID, creating nothing.
        ctap2.make_credential(
            bytes(32),
            {"id": "select.keyctl.invalid"},
            {"id": b"select", "name": "select"},
            [{"type": "public-key", "alg": -7}],
            pin_uv_param=b"",
            pin_uv_protocol=1,
            event=cancel,
        )
        return True
    except CtapError as error:
        return error.code in (CtapError.ERR.PIN_NOT_SET, CtapError.ERR.PIN_INVALID)
    except OSError:
        return False
