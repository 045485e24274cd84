"""A CtapHidConnection straight into a virtual authenticator in this process, through real CTAPHID."""

from __future__ import annotations

import queue

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from keyctl.authenticator import VirtualAuthenticator
from keyctl.authenticator.framing import REPORT_SIZE, HidDevice

READ_TIMEOUT_S = 35.0  # longer than any presence wait, which sends keepalives every 100 ms anyway
VENDOR_ID = 0x1209  # pid.codes, for open-source projects
PRODUCT_ID = 0x4B43


class InProcessConnection(CtapHidConnection):
    """One host-side handle on the device: its own inbox, so several handles can share one device."""

    def __init__(self, device: HidDevice) -> None:
        self._device = device
        self._inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()

    def write_packet(self, data: bytes) -> None:
        self._device.receive(bytes(data), self._inbox.put)

    def read_packet(self) -> bytes:
        try:
            return self._inbox.get(timeout=READ_TIMEOUT_S)
        except queue.Empty:
            raise OSError("the virtual authenticator did not answer") from None

    def close(self) -> None:
        return None


def connect(authenticator: VirtualAuthenticator, name: str = "memory") -> CtapHidDevice:
    """A fido2 CtapHidDevice talking to ``authenticator`` through CTAPHID framing."""
    descriptor = HidDescriptor(
        path=f"virtual:{name}",
        vid=VENDOR_ID,
        pid=PRODUCT_ID,
        report_size_in=REPORT_SIZE,
        report_size_out=REPORT_SIZE,
        product_name="keyctl virtual authenticator",
        serial_number=None,
    )
    return CtapHidDevice(descriptor, InProcessConnection(authenticator.hid))


def open_stored(name: str) -> CtapHidDevice:
    """The stored virtual authenticator ``name`` (state loaded and saved around each command)."""
    from keyctl.authenticator.store import FileStore
    from keyctl.hid.prompt import terminal_prompter

    return connect(VirtualAuthenticator(FileStore(name), prompter=terminal_prompter), name)
