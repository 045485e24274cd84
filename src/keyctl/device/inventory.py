"""Every FIDO authenticator keyctl can reach: USB keys, stored virtual authenticators, UDP simulators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keyctl.errors import KeyctlError


@dataclass(frozen=True)
class ListedKey:
    spec: str  # what --device takes to reach it
    kind: str  # usb, virtual, udp
    product_name: str | None
    vendor_id: int | None
    product_id: int | None
    serial: str | None
    aaguid: str | None
    model: str | None  # from FIDO metadata, when the AAGUID is listed there
    problem: str | None  # why getInfo could not be read (permissions, no answer, locked state)


def _usb_keys() -> list[tuple[str, str | None, int, int, str | None]]:
    from fido2.hid import list_descriptors

    keys = []
    for descriptor in list_descriptors():
        path = descriptor.path.decode() if isinstance(descriptor.path, bytes) else descriptor.path
        keys.append(
            (f"usb:{path}", descriptor.product_name, descriptor.vid, descriptor.pid, descriptor.serial_number)
        )
    return keys


def list_keys(
    specs: Sequence[str] | None = None, model_name: Callable[[str], str | None] = lambda aaguid: None
) -> list[ListedKey]:
    """The authenticators ``specs`` names, or (None) every USB key and stored virtual authenticator."""
    from fido2.ctap2.base import Ctap2

    from keyctl.authenticator import store
    from keyctl.device.errors import key_errors
    from keyctl.hid import open_device

    found: list[tuple[str, str, str | None, int | None, int | None, str | None]]
    if specs is None:
        found = [(spec, "usb", name, vid, pid, serial) for spec, name, vid, pid, serial in _usb_keys()]
        found += [(f"virtual:{name}", "virtual", name, None, None, None) for name in store.names()]
    else:
        found = [(spec, spec.split(":", 1)[0], None, None, None, None) for spec in specs]
    listed: list[ListedKey] = []
    for spec, kind, name, vid, pid, serial in found:
        aaguid = problem = None
        try:
            with key_errors():
                aaguid = str(Ctap2(open_device(spec)).get_info().aaguid)
        except KeyctlError as error:
            problem = error.message
        model = model_name(aaguid) if aaguid else None
        listed.append(ListedKey(spec, kind, name, vid, pid, serial, aaguid, model, problem))
    return listed
