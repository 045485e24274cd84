"""``--authenticator platform`` as the ceremonies' device: the OS API speaks WebAuthn, not CTAP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from threading import Event
from typing import TYPE_CHECKING

from fido2.ctap import STATUS, CtapDevice

if TYPE_CHECKING:
    from fido2.client import ClientDataCollector, WebAuthnClient


class PlatformDevice(CtapDevice):
    """Stands where a key's CtapDevice stands; the ceremony asks it for its WebAuthnClient (``client``)
    instead of wrapping it in fido2's Fido2Client. The CtapDevice methods exist only because the base
    class requires them: the OS API has no CTAP channel to send commands on."""

    def client(self, collector: ClientDataCollector) -> WebAuthnClient:
        from keyctl.platform import platform_client

        return platform_client(collector)

    @property
    def capabilities(self) -> int:
        return 0

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        raise OSError("the platform authenticator takes no CTAP commands")

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())
