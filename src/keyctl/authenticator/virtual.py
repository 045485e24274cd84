"""The virtual authenticator as transports see it: the core device, its command dispatch, its HID."""

from __future__ import annotations

from functools import cached_property

from keyctl.authenticator.device import Device
from keyctl.authenticator.dispatch import dispatch
from keyctl.authenticator.framing import HidDevice
from keyctl.authenticator.ports import DirectLink, Link


class VirtualAuthenticator(Device):
    """A CTAP 2.1 authenticator in software. ``handle`` takes a CTAPHID CBOR message, never raises."""

    @cached_property
    def hid(self) -> HidDevice:
        """Its USB HID interface (device-side CTAPHID): every transport feeds reports into this one."""
        return HidDevice(self, self.clock)

    def handle(self, message: bytes, link: Link | None = None) -> bytes:
        """One CTAP2 request (command byte + CBOR) to one response (status byte + CBOR)."""
        return dispatch(self, message, link or DirectLink())
