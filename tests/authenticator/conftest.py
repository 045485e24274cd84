"""Fixtures: a fresh virtual authenticator, reached through fido2's CtapHidDevice over a real transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fido2.hid import CtapHidDevice

from keyctl.authenticator import VirtualAuthenticator
from keyctl.hid.inprocess import connect
from keyctl.hid.udp import UdpServer, open_udp

Transport = Callable[[VirtualAuthenticator], CtapHidDevice]


@pytest.fixture(params=["inprocess", "udp"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """Opens a CtapHidDevice on an authenticator: in-process, or over a UDP server on a free port."""
    servers: list[UdpServer] = []
    devices: list[CtapHidDevice] = []

    def open_device(authenticator: VirtualAuthenticator) -> CtapHidDevice:
        if request.param == "inprocess":
            device = connect(authenticator)
        else:
            server = UdpServer(authenticator, "127.0.0.1", 0).start()
            servers.append(server)
            device = open_udp(*server.address, timeout_s=10)
        devices.append(device)
        return device

    yield open_device
    for device in devices:
        device.close()
    for server in servers:
        server.stop()


@pytest.fixture
def authenticator() -> VirtualAuthenticator:
    return VirtualAuthenticator()


@pytest.fixture
def device(authenticator: VirtualAuthenticator, transport: Transport) -> CtapHidDevice:
    return transport(authenticator)
