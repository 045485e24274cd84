"""Device specs as users type them: ``virtual:NAME``, ``udp:HOST:PORT``, ``usb``, ``usb:PATH``."""

from __future__ import annotations

from dataclasses import dataclass

from keyctl.errors import InvalidInput

SPEC_HELP = "use virtual:NAME, udp:HOST:PORT (e.g. udp:127.0.0.1:8111), usb, or usb:/dev/hidrawN"


@dataclass(frozen=True)
class VirtualSpec:
    name: str


@dataclass(frozen=True)
class UdpSpec:
    host: str
    port: int


@dataclass(frozen=True)
class UsbSpec:
    path: str | None


DeviceSpec = VirtualSpec | UdpSpec | UsbSpec


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` to (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput(f"{what} {text!r} is not HOST:PORT", "e.g. 127.0.0.1:8111 or [::1]:8111")
    return host, int(port_text)


def parse(spec: str) -> DeviceSpec:
    kind, sep, rest = spec.partition(":")
    if kind == "virtual" and sep and rest:
        return VirtualSpec(rest)
    if kind == "udp" and sep:
        return UdpSpec(*parse_host_port(rest, "device address"))
    if kind == "usb":
        return UsbSpec(rest if sep and rest else None)
    if spec.startswith("/"):  # a hidraw path, as `ls /dev/hidraw*` shows it
        return UsbSpec(spec)
    raise InvalidInput(f"unknown device {spec!r}", SPEC_HELP)
