"""Shared fixtures: every test gets its own data/config/cache dirs and its own keyring service name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyctl.cli.app import run

# A shell's job started with & ignores SIGINT, and every child would inherit that: Ctrl-C tests would see
# it do nothing. A Python handler is reset to the default at exec, as a technician's shell gives it.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "keyctl-home"
    for var, sub in (
        ("KEYCTL_DATA_DIR", "data"),
        ("KEYCTL_CONFIG_DIR", "config"),
        ("KEYCTL_CACHE_DIR", "cache"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("KEYCTL_KEYRING_SERVICE", f"keyctl-test-{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    return home


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> object:
    """Run keyctl in-process: ``cli("totp", "list")`` returns a Result."""

    def invoke(*args: str) -> Result:
        try:
            code = run(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return invoke


def run_keyctl(
    args: Sequence[str], stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> Result:
    """Run keyctl as a separate process, exactly as a user's shell would."""
    proc = subprocess.run(
        [sys.executable, "-m", "keyctl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


# What the docs tests measured (the README's length, the docs pages built, the examples run), printed at
# the end of the pytest run so that CI's output shows it.
DOCS_FACTS: list[str] = []


@pytest.fixture
def docs_fact() -> list[str]:
    return DOCS_FACTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if DOCS_FACTS:
        terminalreporter.section("docs")
        for fact in DOCS_FACTS:
            terminalreporter.write_line(fact)
