"""Transports ending in fido2's CtapHidDevice: virtual (in-process), UDP simulators, USB keys.

``open_device(spec)`` is the one entry point keyctl uses wherever it takes ``--device``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from keyctl.hid.spec import UdpSpec, UsbSpec, VirtualSpec, parse

if TYPE_CHECKING:
    from fido2.hid import CtapHidDevice

logger = logging.getLogger(__name__)


def open_device(spec: str) -> CtapHidDevice:
    """``virtual:NAME`` (a stored virtual authenticator, in-process through CTAPHID framing),
    ``udp:HOST:PORT`` (a simulator), ``usb`` or ``usb:PATH`` (a real key)."""
    parsed = parse(spec)
    logger.debug("opening %s", parsed)
    if isinstance(parsed, VirtualSpec):
        from keyctl.hid.inprocess import open_stored

        return open_stored(parsed.name)
    if isinstance(parsed, UdpSpec):
        from keyctl.hid.udp import open_udp

        return open_udp(parsed.host, parsed.port)
    assert isinstance(parsed, UsbSpec)
    from keyctl.hid.usb import open_usb

    return open_usb(parsed.path)


__all__ = ["open_device", "parse"]
