"""keyctl as its users install it: ``pipx install .`` and ``uv tool install .`` into throwaway tool homes
(nothing of this test's own environment on PATH), then the installed command's ``--version`` and ``demo``;
and what the wheel carries besides the code: py.typed, the man pages, the license and its metadata.

Slow (each install resolves and installs every dependency): one test per installer, run once each."""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from keyctl import __version__

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent  # pipx and uv come with the test extra


def _environment(bin_dir: Path, **extra: str) -> dict[str, str]:
    """The user's environment without this test run's virtual environment, with ``bin_dir`` on PATH."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != TOOLS]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join([str(bin_dir), *path]), **extra}


def _run(args: list[str | Path], env: dict[str, str], timeout: float = 900) -> str:
    proc = subprocess.run(
        [str(arg) for arg in args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def _check_installed(bin_dir: Path, env: dict[str, str], installer: str, docs_fact: list[str]) -> None:
    keyctl = bin_dir / "keyctl"
    assert _run([keyctl, "--version"], env) == f"keyctl {__version__}\n"
    assert "demo complete: demo@example.com signed in with a passkey" in _run([keyctl, "demo"], env)
    docs_fact.append(f"{installer}: keyctl --version and keyctl demo ran from the installed command")


@pytest.mark.slow
def test_pipx_install_gives_a_working_keyctl_and_its_man_pages(tmp_path: Path, docs_fact: list[str]) -> None:
    home, bin_dir, man_dir = tmp_path / "pipx", tmp_path / "bin", tmp_path / "man"
    env = _environment(bin_dir, PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir), PIPX_MAN_DIR=str(man_dir))
    _run([TOOLS / "pipx", "install", "."], env)
    _check_installed(bin_dir, env, "pipx install .", docs_fact)
    # pipx links the wheel's share/man/man1 pages where man looks for them (~/.local/share/man by default)
    assert (man_dir / "man1" / "keyctl-totp.1").read_text() == (ROOT / "man" / "keyctl-totp.1").read_text()
    found = _run(["man", "-w", "keyctl-totp"], {**env, "MANPATH": str(man_dir)})
    assert Path(found.strip()).resolve() == (man_dir / "man1" / "keyctl-totp.1").resolve()


@pytest.mark.slow
def test_uv_tool_install_gives_a_working_keyctl(tmp_path: Path, docs_fact: list[str]) -> None:
    bin_dir = tmp_path / "bin"
    env = _environment(
        bin_dir,
        UV_TOOL_DIR=str(tmp_path / "uv-tools"),
        UV_TOOL_BIN_DIR=str(bin_dir),
        UV_PYTHON=sys.executable,  # this Python 3.11, never a downloaded one
        UV_PYTHON_DOWNLOADS="never",
    )
    _run([TOOLS / "uv", "tool", "install", "."], env)
    _check_installed(bin_dir, env, "uv tool install .", docs_fact)


@pytest.mark.slow
def test_the_wheel_carries_types_man_pages_license_and_metadata(tmp_path: Path) -> None:
    _run([TOOLS / "uv", "build", "--wheel", "--out-dir", tmp_path, "."], _environment(TOOLS))
    (wheel,) = tmp_path.glob("keyctl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.parser.Parser().parsestr(
            archive.read(f"keyctl-{__version__}.dist-info/METADATA").decode()
        )
    assert "keyctl/py.typed" in names  # PEP 561: type checkers use keyctl's annotations
    pages = {name.rsplit("/", 1)[1] for name in names if "/share/man/man1/" in name}
    assert pages == {page.name for page in (ROOT / "man").glob("*.1")}
    assert {"keyctl.1", "keyctl-totp.1", "keyctl-key.1"} <= pages
    assert f"keyctl-{__version__}.dist-info/licenses/LICENSE" in names
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Environment :: Console" in classifiers
    assert metadata["Requires-Python"] == ">=3.11"


def test_the_changelog_keeps_a_changelog() -> None:
    """Keep a Changelog 1.1: ``## [Unreleased]`` first, then ``## [VERSION] - YYYY-MM-DD`` newest first
    (this version among them), sections only of its six kinds."""
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    releases = [re.fullmatch(r"## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?", line) for line in headings]
    assert all(releases), headings
    names = [match[1] for match in releases if match]
    dates = [match[2] for match in releases[1:] if match]
    assert names[0] == "Unreleased"
    assert __version__ in names
    assert all(dates)
    assert dates == sorted(dates, reverse=True)
    kinds = {line[4:] for line in text.splitlines() if line.startswith("### ")}
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
