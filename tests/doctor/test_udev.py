"""The udev rules ship inside the package (a `pip install` has no scripts/ directory): the wheel holds
them, `keyctl doctor --udev-rules` prints them, `--install-udev-rules` writes them, and fix lines point
at these commands instead of a path only a git checkout has."""

from __future__ import annotations

import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Result

Cli = Callable[..., Result]
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "scripts" / "udev" / "70-keyctl-fido.rules"


def test_the_wheel_ships_the_rules(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("keyctl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("keyctl/doctor/udev/70-keyctl-fido.rules") == RULES.read_bytes()


def test_doctor_prints_the_rules(cli: Cli) -> None:
    printed = cli("doctor", "--udev-rules")
    assert printed.exit_code == 0, printed.stderr
    assert printed.stdout == RULES.read_text()
    assert 'TAG+="uaccess"' in printed.stdout


def test_doctor_installs_the_rules(cli: Cli, tmp_path: Path) -> None:
    installed = cli("doctor", "--install-udev-rules", "--rules-dir", str(tmp_path))
    assert installed.exit_code == 0, installed.stderr
    target = tmp_path / "70-keyctl-fido.rules"
    assert target.read_bytes() == RULES.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_installing_where_it_cannot_write_says_how(cli: Cli, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    refused = cli("doctor", "--install-udev-rules", "--rules-dir", str(not_a_dir / "rules.d"))
    assert refused.exit_code == 7
    assert "cannot write" in refused.stderr
    assert "sudo keyctl doctor --install-udev-rules" in refused.stderr
    assert not_a_dir.read_text() == ""
