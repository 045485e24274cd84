"""keyctl doctor end to end: a fake sysfs and pyusb at the OS boundary, the real keyring and a real UDP
simulator, and a keyring made unreachable for real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from keyctl.authenticator import VirtualAuthenticator
from keyctl.errors import ExitCode
from keyctl.hid.udp import UdpServer

from ..conftest import run_keyctl


@pytest.fixture
def no_usb(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import usb.core

    devices: list[Any] = []
    monkeypatch.setattr(usb.core, "find", lambda find_all: iter(devices))
    return devices


@pytest.fixture
def simulator() -> Iterator[str]:
    server = UdpServer(VirtualAuthenticator(), "127.0.0.1", 0).start()
    host, port = server.address
    yield f"{host}:{port}"
    server.stop()


def _doctor(cli: Any, fake_os: tuple[Path, Path], *args: str) -> tuple[Any, dict[str, Any]]:
    sys_root, dev_root = fake_os
    result = cli("doctor", "--json", "--sys-root", str(sys_root), "--dev-root", str(dev_root), *args)
    assert result.stdout, result.stderr
    return result, json.loads(result.stdout)


def test_inaccessible_key_blocks_with_the_udev_fix(
    cli: Any, fake_os: tuple[Path, Path], no_usb: list[Any]
) -> None:
    result, report = _doctor(cli, fake_os)  # hidraw3 is a FIDO key with no /dev node it may open
    assert result.exit_code == ExitCode.NO_DEVICE
    keys = [c for c in report["checks"] if c["name"] == "security key"]
    assert [c["status"] for c in keys] == ["ok", "ok", "fail"]
    assert "No Node Key" in keys[2]["detail"]
    assert "70-keyctl-fido.rules" in keys[2]["fix"]


def test_healthy_machine_with_a_simulator(
    cli: Any, fake_os: tuple[Path, Path], no_usb: list[Any], simulator: str, tmp_path: Path
) -> None:
    empty = tmp_path / "no-hidraw"
    empty.mkdir()
    result, report = _doctor(cli, (empty, fake_os[1]), "--udp", simulator)
    assert result.exit_code == 0, result.stdout
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["keyring"] == "ok"
    assert statuses["security key"] == "warn"
    assert statuses[f"simulator udp:{simulator}"] == "ok"


def test_silent_simulator_fails(
    cli: Any, fake_os: tuple[Path, Path], no_usb: list[Any], tmp_path: Path
) -> None:
    result, report = _doctor(cli, (tmp_path, fake_os[1]), "--udp", "127.0.0.1:9")
    assert result.exit_code == ExitCode.NO_DEVICE
    assert report["checks"][-1]["status"] == "fail"


def test_key_with_fido_disabled_is_reported(cli: Any, fake_os: tuple[Path, Path], no_usb: list[Any]) -> None:
    no_usb.append(SimpleNamespace(idVendor=0x1050, idProduct=0x0404, product="YubiKey CCID"))
    _result, report = _doctor(cli, fake_os)
    usb_checks = [c for c in report["checks"] if c["name"] == "usb"]
    assert len(usb_checks) == 1
    assert "1050:0404" in usb_checks[0]["detail"]
    assert "FIDO may be disabled" in usb_checks[0]["fix"]


def test_unreachable_keyring_blocks(tmp_path: Path) -> None:
    result = run_keyctl(
        ["doctor", "--json", "--sys-root", str(tmp_path), "--dev-root", str(tmp_path)],
        env={"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus", "KEYCTL_KEYRING_TIMEOUT": "5"},
    )
    assert result.exit_code == ExitCode.SECRET_STORE, result.stderr
    keyring = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "keyring")
    assert keyring["status"] == "fail"
    assert keyring["fix"]


def test_human_output_names_the_problem(cli: Any, fake_os: tuple[Path, Path], no_usb: list[Any]) -> None:
    sys_root, dev_root = fake_os
    result = cli("doctor", "--sys-root", str(sys_root), "--dev-root", str(dev_root))
    assert result.exit_code == ExitCode.NO_DEVICE
    assert "may not open it" in result.stdout
    assert "problem(s) stop keyctl" in result.stderr
