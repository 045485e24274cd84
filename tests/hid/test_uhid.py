"""The /dev/uhid transport without a kernel: a SEQPACKET socket pair plays /dev/uhid (one event per read,
as the kernel gives them), and python-fido2's own CtapHidDevice and report-descriptor parser talk to it.
The real kernel is tests/vm's job; this pins the event layout and the errors."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fido2.ctap2.base import Ctap2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor, parse_report_descriptor

from keyctl.authenticator import VirtualAuthenticator, store
from keyctl.errors import ExitCode, NotSupported
from keyctl.hid import uhid
from tests.authenticator.test_power import PIN, block_pin_auth, pin_works
from tests.conftest import run_keyctl

UHID_OUTPUT, UHID_INPUT2, UHID_CREATE2, UHID_DESTROY = 6, 12, 11, 1


class KernelSide(CtapHidConnection):
    """What hidraw does: a write becomes UHID_OUTPUT with the report number (0) first; UHID_INPUT2 is read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write_packet(self, data: bytes) -> None:
        report = b"\0" + bytes(data)
        self.sock.send(struct.pack(f"<I{uhid.UHID_DATA_MAX}sHB", UHID_OUTPUT, report, len(report), 1))

    def read_packet(self) -> bytes:
        event = self.sock.recv(uhid.EVENT_SIZE)
        kind, size = struct.unpack_from("<IH", event)
        assert kind == UHID_INPUT2
        return event[6 : 6 + size]

    def close(self) -> None:
        return None


@pytest.fixture
def attached() -> Iterator[tuple[uhid.UhidDevice, socket.socket]]:
    device_end, kernel_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kernel_end.settimeout(10)
    device = uhid.UhidDevice(device_end.detach(), VirtualAuthenticator(), "t1", 0x1209, 0x4B44)
    yield device, kernel_end
    device.close()
    kernel_end.close()


def test_create2_announces_a_fido_device(attached: tuple[uhid.UhidDevice, socket.socket]) -> None:
    _, kernel = attached
    event = kernel.recv(uhid.EVENT_SIZE)
    assert len(event) == uhid.EVENT_SIZE
    kind, name, _, uniq, rd_size, bus, vendor, product = struct.unpack_from("<I128s64s64sHHII", event)
    assert (kind, bus, vendor, product) == (UHID_CREATE2, 0x03, 0x1209, 0x4B44)
    assert name.rstrip(b"\0") == b"keyctl virtual authenticator t1"
    assert uniq.rstrip(b"\0") == b"t1"  # the serial number: tells two attached keys apart
    descriptor = event[struct.calcsize("<I128s64s64sHHIIII") :][:rd_size]
    # python-fido2's parser (what its hidraw backend runs) accepts it only with the FIDO usage page.
    assert parse_report_descriptor(descriptor) == (64, 64)
    assert descriptor.startswith(bytes.fromhex("06d0f1"))


def test_ctap2_through_uhid_events(attached: tuple[uhid.UhidDevice, socket.socket]) -> None:
    device, kernel = attached
    kernel.recv(uhid.EVENT_SIZE)  # CREATE2
    server = threading.Thread(target=device.serve_forever, daemon=True)
    server.start()
    hid = CtapHidDevice(HidDescriptor("uhid-test", 0x1209, 0x4B44, 64, 64, None, None), KernelSide(kernel))
    info = Ctap2(hid).get_info()
    assert "FIDO_2_1" in info.versions
    device.stop()
    server.join(5)
    assert not server.is_alive()


def test_feature_report_requests_get_an_error_reply(attached: tuple[uhid.UhidDevice, socket.socket]) -> None:
    device, kernel = attached
    kernel.recv(uhid.EVENT_SIZE)  # CREATE2
    threading.Thread(target=device.serve_forever, daemon=True).start()
    # UHID_GET_REPORT, id 77: a host asking for a feature report, which a FIDO key does not have
    kernel.send(struct.pack("<IIBB", 9, 77, 0, 3))
    kind, request_id, err = struct.unpack_from("<IIH", kernel.recv(uhid.EVENT_SIZE))
    assert (kind, request_id, err) == (10, 77, 5)  # GET_REPORT_REPLY, same id, EIO: the kernel does not hang
    device.stop()


def test_close_destroys_the_device(attached: tuple[uhid.UhidDevice, socket.socket]) -> None:
    device, kernel = attached
    kernel.recv(uhid.EVENT_SIZE)  # CREATE2
    device.close()
    assert struct.unpack_from("<I", kernel.recv(uhid.EVENT_SIZE)) == (UHID_DESTROY,)
    assert kernel.recv(uhid.EVENT_SIZE) == b""  # and the descriptor is closed
    device.close()  # twice is harmless


def test_no_dev_uhid_names_modprobe(tmp_path: Path) -> None:
    with pytest.raises(NotSupported) as raised:
        uhid.open_uhid(str(tmp_path / "uhid"))
    assert raised.value.exit_code == ExitCode.NOT_SUPPORTED
    assert "does not exist (the uhid kernel module is not loaded)" in raised.value.message
    assert "sudo modprobe uhid" in raised.value.remedy
    found = uhid.availability(str(tmp_path / "uhid"))
    assert not found.possible
    assert "sudo modprobe uhid" in found.remedy


def test_not_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.platform", "darwin")
    with pytest.raises(NotSupported, match="needs Linux's /dev/uhid; this is darwin"):
        uhid.open_uhid(str(tmp_path))
    assert not uhid.availability(str(tmp_path)).possible


def test_permission_denied_names_the_udev_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(path: str, flags: int) -> int:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(uhid.os, "open", refuse)  # root may open anything: the guest tests a real refusal
    with pytest.raises(NotSupported) as raised:
        uhid.open_uhid(str(tmp_path / "uhid"))
    assert "may not open" in raised.value.message
    assert "/etc/udev/rules.d/71-keyctl-uhid.rules" in raised.value.remedy


def test_the_rule_in_the_remedy_is_the_shipped_rules_file() -> None:
    shipped = Path(__file__).resolve().parents[2] / "scripts" / "udev" / "71-keyctl-uhid.rules"
    rules = [line for line in shipped.read_text().splitlines() if line and not line.startswith("#")]
    assert rules == [uhid.UDEV_RULE]


# `keyctl virtual attach` in its own process, its /dev/uhid a socket pair end handed over at start-up
ATTACH_WITH_FD = (
    "import sys; from keyctl.hid import uhid; fd = int(sys.argv.pop(1)); uhid.open_uhid = lambda path: fd; "
    "from keyctl.__main__ import main; sys.argv[0] = 'keyctl'; main()"
)


def test_attach_registers_for_power_cycle_and_handles_sigusr1(monkeypatch: pytest.MonkeyPatch) -> None:
    """`keyctl virtual power-cycle NAME` and SIGUSR1 reach an attached key as they reach `serve`: PIN
    auth blocked by three wrong PINs works again, on the same (still attached) device."""
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    monkeypatch.setenv("CI_PIN", PIN)
    assert run_keyctl(["virtual", "create", "pc", "--uv", "none", "--pin-env", "CI_PIN"]).exit_code == 0
    device_end, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kernel.settimeout(20)
    fd = device_end.fileno()
    process = subprocess.Popen(
        [sys.executable, "-c", ATTACH_WITH_FD, str(fd), "virtual", "attach", "pc"],
        pass_fds=(fd,),
        stderr=subprocess.PIPE,
        text=True,
    )
    device_end.close()
    assert process.stderr is not None
    try:
        assert struct.unpack_from("<I", kernel.recv(uhid.EVENT_SIZE)) == (UHID_CREATE2,)
        assert "attached virtual:pc" in process.stderr.readline()
        hid = CtapHidDevice(
            HidDescriptor("uhid-test", 0x1209, 0x4B43, 64, 64, None, None), KernelSide(kernel)
        )
        block_pin_auth(hid)
        cycled = run_keyctl(["virtual", "power-cycle", "pc"])
        assert cycled.exit_code == 0, cycled.stderr
        assert f"pid {process.pid}" in cycled.stderr
        assert "power-cycled" in process.stderr.readline()
        assert pin_works(hid)
        block_pin_auth(hid)
        os.kill(process.pid, signal.SIGUSR1)
        assert "power-cycled" in process.stderr.readline()
        assert pin_works(hid)
    finally:
        process.terminate()
        process.wait(10)
        kernel.close()
    assert run_keyctl(["virtual", "power-cycle", "pc"]).exit_code == ExitCode.NOT_FOUND  # unregistered
