"""`keyctl virtual attach` and doctor's attach check on a machine without the real device: the errors and
what they change (nothing). Attaching for real is tested against a kernel in tests/vm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keyctl.errors import ExitCode


@pytest.fixture
def ci_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyctl.authenticator import store

    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", store.new_ci_key())


def test_without_the_uhid_module(cli: Any, ci_key: None, tmp_path: Path) -> None:
    assert cli("virtual", "create", "ci").exit_code == 0
    result = cli("virtual", "attach", "ci", "--uhid-path", str(tmp_path / "uhid"))
    assert result.exit_code == ExitCode.NOT_SUPPORTED
    assert "the uhid kernel module is not loaded" in result.stderr
    assert "sudo modprobe uhid" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # one line of error, one of remedy, no traceback


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--vendor-id", "0x10000", "vendor id 0x10000 is out of range"),
        ("--product-id", "yubico", "product id 'yubico' is not a number"),
    ],
)
def test_bad_usb_ids(cli: Any, ci_key: None, tmp_path: Path, option: str, value: str, message: str) -> None:
    stand_in = tmp_path / "uhid"
    stand_in.write_bytes(b"")
    result = cli("virtual", "attach", "ci", option, value, "--uhid-path", str(stand_in))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert message in result.stderr
    assert stand_in.read_bytes() == b""  # nothing was sent to the device


def test_an_unknown_authenticator_creates_no_device(cli: Any, ci_key: None, tmp_path: Path) -> None:
    stand_in = tmp_path / "uhid"
    stand_in.write_bytes(b"")
    result = cli("virtual", "attach", "nosuch", "--uhid-path", str(stand_in))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no virtual authenticator named 'nosuch'" in result.stderr
    assert stand_in.read_bytes() == b""  # no UHID_CREATE2 written


def test_doctor_explains_why_attach_is_not_possible(cli: Any, tmp_path: Path) -> None:
    result = cli("doctor", "--json", "--uhid-path", str(tmp_path / "uhid"))
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "virtual attach")
    assert check["status"] == "info"  # optional: never what makes doctor fail
    assert "not loaded" in check["detail"]
    assert "sudo modprobe uhid" in check["fix"]
    stand_in = tmp_path / "uhid"
    stand_in.write_bytes(b"")
    result = cli("doctor", "--json", "--uhid-path", str(stand_in))
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "virtual attach")
    assert check["status"] == "ok"
