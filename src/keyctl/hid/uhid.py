"""A virtual authenticator as a real HID device on Linux, through /dev/uhid (the kernel's user-space HID).

The kernel shows the device as /dev/hidrawN with the FIDO report descriptor, so browsers, libfido2,
python-fido2's hidraw backend and keyctl's own ``usb`` path see a plugged-in security key. Each output
report the host writes arrives here as a UHID_OUTPUT event and goes through the same device-side CTAPHID
code (``authenticator.framing``) as the in-process and UDP transports; answers go back as UHID_INPUT2.
Closing the file descriptor (also on a crash or kill -9) makes the kernel remove the device.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import struct
import sys
import threading
from dataclasses import dataclass

from keyctl.authenticator import VirtualAuthenticator
from keyctl.authenticator.framing import REPORT_SIZE
from keyctl.errors import InvalidInput, NotSupported

log = logging.getLogger(__name__)

UHID_PATH = "/dev/uhid"
VENDOR_ID = 0x1209  # pid.codes, for open-source projects (as the in-process transport reports)
PRODUCT_ID = 0x4B43
BUS_USB = 0x03
POLL_S = 0.2

# struct uhid_event (linux/uhid.h): a u32 type, then a packed union whose largest member is create2.
UHID_DESTROY = 1
UHID_START = 2
UHID_STOP = 3
UHID_OPEN = 4
UHID_CLOSE = 5
UHID_OUTPUT = 6
UHID_GET_REPORT = 9
UHID_GET_REPORT_REPLY = 10
UHID_CREATE2 = 11
UHID_INPUT2 = 12
UHID_SET_REPORT = 13
UHID_SET_REPORT_REPLY = 14
UHID_DATA_MAX = 4096
_CREATE2 = struct.Struct(f"<I128s64s64sHHIIII{UHID_DATA_MAX}s")
EVENT_SIZE = _CREATE2.size  # 4376: reads ask for a whole event
_INPUT2 = struct.Struct("<IH")
_OUTPUT = struct.Struct(f"<I{UHID_DATA_MAX}sHB")
_REQUEST_ID = struct.Struct("<II")  # type, id: GET_REPORT and SET_REPORT open with these
_REPORT_REPLY = struct.Struct("<IIHH")  # type, id, err, size (no data: this device has no feature reports)

# The FIDO HID report descriptor (CTAP 2.1 §11.2.8.1): usage page 0xF1D0, one 64-byte input and output report.
REPORT_DESCRIPTOR = bytes.fromhex(
    "06d0f1"  # Usage Page (FIDO Alliance)
    "0901"  # Usage (CTAPHID)
    "a101"  # Collection (Application)
    "0920150026ff00750895408102"  # Usage (Data In), 0..255, 8 bits x 64, Input
    "0921150026ff00750895409102"  # Usage (Data Out), 0..255, 8 bits x 64, Output
    "c0"  # End Collection
)

MODULE_REMEDY = (
    "load the kernel module: sudo modprobe uhid "
    "(at every boot: echo uhid | sudo tee /etc/modules-load.d/uhid.conf)"
)
UDEV_RULE = 'KERNEL=="uhid", SUBSYSTEM=="misc", TAG+="uaccess"'  # scripts/udev/71-keyctl-uhid.rules
PERMISSION_REMEDY = (
    f"at a desktop, give the seat's user access: echo '{UDEV_RULE}' | sudo tee "
    "/etc/udev/rules.d/71-keyctl-uhid.rules && sudo udevadm control --reload && "
    "sudo udevadm trigger --action=add /sys/devices/virtual/misc/uhid; over SSH or in CI, run attach as root"
)


@dataclass(frozen=True)
class Availability:
    """Whether this process can create a HID device here, and if not, why and what to do."""

    possible: bool
    detail: str
    remedy: str = ""


def _not_linux() -> Availability | None:
    if sys.platform.startswith("linux"):
        return None
    return Availability(
        False,
        f"virtual attach needs Linux's /dev/uhid; this is {sys.platform}",
        "use --device virtual:NAME, or keyctl virtual serve (UDP), or run attach in a Linux VM",
    )


def availability(path: str = UHID_PATH) -> Availability:
    """What ``UhidDevice`` would hit here, without creating anything."""
    if found := _not_linux():
        return found
    if not os.path.exists(path):
        return Availability(
            False, f"{path} does not exist (the uhid kernel module is not loaded)", MODULE_REMEDY
        )
    if not os.access(path, os.R_OK | os.W_OK):
        return Availability(False, f"this user may not open {path}", PERMISSION_REMEDY)
    return Availability(True, f"{path} is present and this user may open it")


def open_uhid(path: str = UHID_PATH) -> int:
    """A descriptor on /dev/uhid (no device yet), or a NotSupported error saying how to fix it."""
    if found := _not_linux():
        raise NotSupported(f"cannot attach: {found.detail}", found.remedy)
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotSupported(
            f"cannot attach: {path} does not exist (the uhid kernel module is not loaded)", MODULE_REMEDY
        ) from None
    except PermissionError:
        raise NotSupported(f"cannot attach: this user may not open {path}", PERMISSION_REMEDY) from None


def check_id(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise InvalidInput(f"{what} {value:#x} is out of range", f"give a 16-bit {what}, e.g. 0x1209")
    return value


class UhidDevice:
    """One virtual authenticator attached as a HID device on ``fd`` (from ``open_uhid``) until ``close``.

    ``serve_forever`` reads kernel events on the calling thread; replies may come from the framing's
    worker thread, so writes to the descriptor are serialised. The device owns ``fd`` from here on.
    """

    def __init__(
        self,
        fd: int,
        authenticator: VirtualAuthenticator,
        name: str,
        vendor_id: int = VENDOR_ID,
        product_id: int = PRODUCT_ID,
    ) -> None:
        self._fd = fd
        self._device = authenticator.hid
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self.name = name
        try:
            self._write(
                _CREATE2.pack(
                    UHID_CREATE2,
                    f"keyctl virtual authenticator {name}"[:127].encode(),
                    f"keyctl/{os.getpid()}"[:63].encode(),
                    name[:63].encode(),
                    len(REPORT_DESCRIPTOR),
                    BUS_USB,
                    vendor_id,
                    product_id,
                    0x0100,
                    0,
                    REPORT_DESCRIPTOR,
                )
            )
        except OSError as error:
            os.close(self._fd)
            raise NotSupported(f"the kernel refused to create the HID device ({error.strerror})") from None

    def _write(self, event: bytes) -> None:
        with self._write_lock:
            os.write(self._fd, event)

    def _reply(self, report: bytes) -> None:
        try:
            self._write(_INPUT2.pack(UHID_INPUT2, len(report)) + report)
        except OSError as error:  # device being destroyed: the host is gone anyway
            log.debug("input report dropped: %s", error)

    def _handle(self, event: bytes) -> None:
        (kind,) = struct.unpack_from("<I", event)
        if kind == UHID_OUTPUT:
            _, data, size, _ = _OUTPUT.unpack_from(event.ljust(_OUTPUT.size, b"\0"))
            report = data[:size]
            if size == REPORT_SIZE + 1:  # hidraw passes the report number (0: unnumbered) first
                report = report[1:]
            self._device.receive(report.ljust(REPORT_SIZE, b"\0"), self._reply)
        elif kind in (UHID_GET_REPORT, UHID_SET_REPORT):
            _, request_id = _REQUEST_ID.unpack_from(event)
            answer = UHID_GET_REPORT_REPLY if kind == UHID_GET_REPORT else UHID_SET_REPORT_REPLY
            self._write(_REPORT_REPLY.pack(answer, request_id, errno.EIO, 0))
        else:  # START, STOP, OPEN, CLOSE: nothing to do, the device answers whoever writes
            log.debug("uhid event %d", kind)

    def serve_forever(self) -> None:
        """Answer the host until ``stop`` (another thread) or an exception (Ctrl-C) ends it."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(POLL_S * 1000):
                continue
            self._handle(os.read(self._fd, EVENT_SIZE))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Remove the device (UHID_DESTROY) and release the descriptor."""
        self._stop.set()
        if self._fd < 0:
            return
        try:
            self._write(struct.pack("<I", UHID_DESTROY))
        except OSError as error:
            log.debug("destroy failed (the kernel removes the device on close anyway): %s", error)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> UhidDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
