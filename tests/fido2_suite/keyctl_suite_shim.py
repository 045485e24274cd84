"""pytest plugin running python-fido2's device test suite against keyctl's virtual authenticator.

Loaded with ``-p keyctl_suite_shim`` into a pytest session over ``tests/device/`` of the fido2 sdist.
The suite finds its key through fido2.hid's discovery and asks a person to unplug and re-insert it; here
discovery sees one virtual key on a virtual bus, and the suite's "disconnect" / "connect" prompts unplug
it and plug it back in (a power cycle: volatile state lost, a new device path). The suite's own
selection, reconnect and reset code runs unchanged.

Environment: KEYCTL_SUITE_TRANSPORT = ``inprocess`` (default) or ``udp`` (CTAPHID over loopback UDP).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import fido2.hid
import pytest
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from keyctl.authenticator import AttestationMode, UvMode, VirtualAuthenticator, new_state
from keyctl.authenticator.framing import REPORT_SIZE
from keyctl.hid.inprocess import InProcessConnection
from keyctl.hid.udp import UdpConnection, UdpServer

TRANSPORTS = ("inprocess", "udp")
EP_RP_ID = "ep.example.com"  # on the key's enterprise list; the runner passes it to the suite's --ep-rp-id


class _PluggedConnection(CtapHidConnection):
    """A handle that dies with the insertion it was opened on, as a real one does on unplug."""

    def __init__(self, bus: VirtualBus, inner: CtapHidConnection) -> None:
        self._bus = bus
        self._insertion = bus.insertion
        self._inner = inner

    def _check(self) -> None:
        if self._bus.insertion != self._insertion or not self._bus.plugged:
            raise OSError("the virtual authenticator was unplugged")

    def write_packet(self, data: bytes) -> None:
        self._check()
        self._inner.write_packet(data)

    def read_packet(self) -> bytes:
        self._check()
        return self._inner.read_packet()

    def close(self) -> None:
        self._inner.close()


class VirtualBus:
    """A USB bus with one slot, holding a factory-fresh virtual authenticator."""

    def __init__(self, transport: str) -> None:
        if transport not in TRANSPORTS:
            raise pytest.UsageError(f"KEYCTL_SUITE_TRANSPORT must be one of {TRANSPORTS}, not {transport!r}")
        self.transport = transport
        # x5c: the suite's attestation tests read the certificate; a sensor, no finger: uv is off.
        state = new_state(attestation_mode=AttestationMode.X5C, uv=UvMode.FINGERPRINT, ep_rp_ids=[EP_RP_ID])
        self.authenticator = VirtualAuthenticator(state)
        self.insertion = 0
        self.plugged = False
        self._server: UdpServer | None = None
        self._descriptor: HidDescriptor | None = None
        self.plug()

    def plug(self) -> None:
        if self.plugged:
            return
        self.authenticator.power_cycle()
        self.insertion += 1
        if self.transport == "udp":
            self._server = UdpServer(self.authenticator, "127.0.0.1", 0).start()
            host, port = self._server.address
            path = f"udp:{host}:{port}"
        else:
            path = f"virtual:suite-{self.insertion}"
        self._descriptor = HidDescriptor(
            path, 0x1209, 0x4B43, REPORT_SIZE, REPORT_SIZE, "keyctl virtual authenticator", None
        )
        self.plugged = True

    def unplug(self) -> None:
        if not self.plugged:
            return
        self.plugged = False
        self._descriptor = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    # fido2.hid's discovery API

    def list_descriptors(self) -> list[HidDescriptor]:
        return [self._descriptor] if self._descriptor is not None else []

    def get_descriptor(self, path: Any) -> HidDescriptor:
        if self._descriptor is None or self._descriptor.path != path:
            raise ValueError(f"no device at {path!r}")
        return self._descriptor

    def open_connection(self, descriptor: HidDescriptor) -> CtapHidConnection:
        self.get_descriptor(descriptor.path)
        if self._server is not None:
            host, port = self._server.address
            return _PluggedConnection(self, UdpConnection(host, port, timeout_s=10))
        return _PluggedConnection(self, InProcessConnection(self.authenticator.hid))

    def open_device(self, path: Any) -> CtapHidDevice:
        descriptor = self.get_descriptor(path)
        return CtapHidDevice(descriptor, self.open_connection(descriptor))


BUS: VirtualBus | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: Any, args: list[str]) -> None:
    """Before the suite's conftest binds fido2.hid's functions: point them at the virtual bus."""
    global BUS
    BUS = VirtualBus(os.environ.get("KEYCTL_SUITE_TRANSPORT", "inprocess"))
    fido2.hid.list_descriptors = BUS.list_descriptors
    fido2.hid.get_descriptor = BUS.get_descriptor
    fido2.hid.open_connection = BUS.open_connection
    fido2.hid.open_device = BUS.open_device


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """When the suite's package is imported, its prompts to unplug and insert move the virtual key."""
    if getattr(plugin, "__name__", None) != "tests.device.conftest":
        return
    printer = sys.modules["tests.device"].Printer
    original_remove, original_insert = printer.remove, printer.insert

    def remove(self: Any, nfc: bool = False) -> None:
        original_remove(self, nfc)
        assert BUS is not None
        BUS.unplug()

    def insert(self: Any, nfc: bool = False) -> None:
        original_insert(self, nfc)
        assert BUS is not None
        BUS.plug()

    printer.remove, printer.insert = remove, insert
