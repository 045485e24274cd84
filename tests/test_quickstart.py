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
README_MAX_LINES = 200


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


def test_readme_keeps_every_section(docs_fact: list[str]) -> None:
    """The README is the front page: who keyctl is for, how to install it, the Quick start, one example per
    kind of user, the commands and the architecture, in at most README_MAX_LINES lines that link into the
    docs site (docs/), which holds the rest."""
    readme = (ROOT / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Install",
        "## Quick start",
        "## Examples",
        "## Commands",
        "## Architecture",
        "## More",
    ]
    lines = len(readme.splitlines())
    docs_fact.append(f"README.md: {lines} lines (at most {README_MAX_LINES})")
    assert lines <= README_MAX_LINES
    linked = set(re.findall(r"\]\(docs/([\w./-]+\.md)(?:#[\w-]*)?\)", readme))
    assert len(linked) >= 10, linked
    for page in linked:
        assert (ROOT / "docs" / page).is_file(), page
