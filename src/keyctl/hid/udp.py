"""CTAPHID over UDP, the convention of firmware simulators: one datagram is one 64-byte HID report.

The server listens on a port and answers each report to the address it came from; the client is a
CtapHidConnection, so fido2's CtapHidDevice (and all of keyctl) can use a simulator like a USB key.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import threading
from typing import Any

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from keyctl.authenticator import VirtualAuthenticator
from keyctl.authenticator.framing import REPORT_SIZE
from keyctl.errors import InvalidInput, NoDevice

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 35.0  # longer than any presence wait, which sends keepalives every 100 ms anyway
CONNECT_TIMEOUT_S = 3.0  # for the INIT answer: a simulator answers at once or not at all
POLL_S = 0.2


class UdpConnection(CtapHidConnection):
    def __init__(self, host: str, port: int, timeout_s: float = READ_TIMEOUT_S) -> None:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as error:
            raise NoDevice(f"cannot resolve {host} ({error})", "check the udp:HOST:PORT address") from None
        self._sock = socket.socket(family, kind, proto)
        self._sock.settimeout(timeout_s)
        self._sock.connect(address)

    def write_packet(self, data: bytes) -> None:
        self._sock.send(data)

    def read_packet(self) -> bytes:
        try:
            return self._sock.recv(REPORT_SIZE)
        except TimeoutError:
            raise OSError("the UDP authenticator did not answer") from None

    def set_timeout(self, seconds: float) -> None:
        self._sock.settimeout(seconds)

    def close(self) -> None:
        self._sock.close()


def open_udp(host: str, port: int, timeout_s: float = READ_TIMEOUT_S) -> CtapHidDevice:
    """A fido2 CtapHidDevice for a CTAPHID-over-UDP simulator (``keyctl virtual serve --udp``) at
    ``host``:``port``; one datagram is one 64-byte report."""
    descriptor = HidDescriptor(
        path=f"udp:{host}:{port}",
        vid=0,
        pid=0,
        report_size_in=REPORT_SIZE,
        report_size_out=REPORT_SIZE,
        product_name="CTAPHID over UDP",
        serial_number=None,
    )
    connection = UdpConnection(host, port, min(timeout_s, CONNECT_TIMEOUT_S))
    try:
        device = CtapHidDevice(descriptor, connection)
    except OSError as error:
        connection.close()
        raise NoDevice(
            f"No compatible device found at udp:{host}:{port} ({error})",
            "start it with 'keyctl virtual serve NAME --udp HOST:PORT' or check the address",
        ) from None
    connection.set_timeout(timeout_s)
    return device


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class UdpServer:
    """Serves one virtual authenticator on a UDP port until ``stop`` is called."""

    def __init__(
        self, authenticator: VirtualAuthenticator, host: str, port: int, allow_remote: bool = False
    ) -> None:
        if not allow_remote and not _is_loopback(host):
            raise InvalidInput(
                f"refusing to serve a virtual authenticator on non-loopback address {host}",
                "bind 127.0.0.1 or ::1, or pass --allow-remote if you really mean it",
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError as error:
            self._sock.close()
            raise InvalidInput(
                f"cannot listen on {host}:{port} ({error.strerror})", "pick a free port"
            ) from None
        self._sock.settimeout(POLL_S)
        self._device = authenticator.hid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                report, sender = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            self._device.receive(report, functools.partial(self._reply, to=sender))

    def _reply(self, packet: bytes, to: tuple[Any, ...]) -> None:
        try:
            self._sock.sendto(packet, to)
        except OSError as error:  # the client went away: nothing to do
            log.debug("reply to %s failed: %s", to, error)

    def start(self) -> UdpServer:
        """Serve on a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="udp-authenticator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()
