"""The README's Quick start: exactly two commands; the test command is what CI runs; the first one works
as written, in a fresh virtual environment built from a copy of this tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def test_two_commands_and_ci_runs_the_second() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert commands[1] == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_first_command_installs_and_runs_the_demo(tmp_path: Path) -> None:
    clone = tmp_path / "keyctl"
    shutil.copytree(
        ROOT, clone, ignore=shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.egg-info", ".*_cache")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYCTL_", "DBUS_", "VIRTUAL_ENV"))}
    result = subprocess.run(
        ["bash", "-c", _quick_start_commands()[0]],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo complete: demo@example.com signed in with a passkey" in result.stdout
    assert "7. signed in with the passkey" in result.stderr  # the steps are status lines, on stderr


def test_readme_keeps_every_section() -> None:
    """Each part of keyctl documents itself in the README; a lost section is a lost contract."""
    headings = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("## ")]
    for expected in (
        "## Quick start",
        "## Commands",
        "## Reference server",
        "## Virtual authenticator",
        "## Passkey sign-in",
        "## Security keys",
        "## FIDO metadata and audits",
        "## Platform authenticators",
        "## TOTP codes",
        "## Exit codes",
        "## Architecture",
        "## Testing",
        "## Benchmarks",
    ):
        assert any(h.startswith(expected) for h in headings), expected
