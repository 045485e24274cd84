"""The man pages: generated from the command tree (every command, option and exit code in its page), the
copies in man/ current, rendered by man-db/groff without a warning, installed where man finds them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import click

from keyctl.cli.app import command_tree
from keyctl.errors import MEANINGS, ExitCode

from ..conftest import run_keyctl

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"


def _render(source: Path) -> tuple[str, str]:
    """``man -l`` of one page as plain text, and what groff warned about (all warnings on)."""
    proc = subprocess.run(
        ["man", "--warnings=all", "-l", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANWIDTH": "200", "MAN_DISABLE_SECCOMP": "1", "LC_ALL": "C.UTF-8"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def test_the_pages_in_man_are_current(tmp_path: Path) -> None:
    result = run_keyctl(["man", "--install", "--prefix", str(tmp_path)])  # what scripts/man-pages.sh runs
    assert result.exit_code == 0, result.stderr
    expected = {page.name: page.read_text() for page in (tmp_path / "share" / "man" / "man1").glob("*.1")}
    kept = {page.name: page.read_text() for page in MAN.glob("*.1")}
    stale = sorted(name for name in expected.keys() | kept.keys() if expected.get(name) != kept.get(name))
    assert not stale, f"man/ is out of date ({', '.join(stale)}): run bash scripts/man-pages.sh"


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if not command.hidden:
            found.append((f"{path} {name}", command))
            if isinstance(command, click.Group):
                found += _commands(command, f"{path} {name}")
    return found


def test_every_command_option_and_exit_code_is_in_its_rendered_page(docs_fact: list[str]) -> None:
    rendered: dict[str, str] = {}
    for page in MAN.glob("*.1"):
        text, warnings = _render(page)
        assert warnings == "", f"{page.name}: {warnings}"
        rendered[page.stem] = text
    commands = _commands(command_tree(), "keyctl")
    assert len(commands) > 60
    for path, command in commands:
        top = path.split()[1]
        text = rendered[f"keyctl-{top}"]
        assert path in text, path
        assert f"keyctl-{top}(1)" in rendered["keyctl"]
        for param in command.params:
            for opt in param.opts if isinstance(param, click.Option) and not param.hidden else []:
                assert opt in text, (path, opt)
    for code in ExitCode:
        line = f"{int(code)} {MEANINGS[code].replace('`', '')}"
        assert all(line in " ".join(text.split()) for text in rendered.values()), line
    docs_fact.append(
        f"man pages: {len(rendered)} rendered without a warning, {len(commands)} commands in them"
    )


def test_man_db_indexes_each_page_by_its_name() -> None:
    """lexgrog reads the NAME section as mandb does for whatis/apropos: ``keyctl-totp - TOTP/HOTP ...``."""
    proc = subprocess.run(["lexgrog", *sorted(MAN.glob("*.1"))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in MAN.glob("*.1"):
        assert f'{page}: "{page.stem} - ' in proc.stdout


def test_man_install_puts_the_pages_where_man_finds_them(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)  # as ~/.local/bin on PATH: man-db searches ../share/man
    result = run_keyctl(["man", "--install", "--prefix", str(prefix)])
    assert result.exit_code == 0, result.stderr
    assert f"installed {len(list(MAN.glob('*.1')))} man pages in {prefix}/share/man/man1" in result.stderr
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}/usr/bin:/bin"
    found = subprocess.run(["man", "-w", "keyctl-totp"], capture_output=True, text=True, env=env, timeout=60)
    assert found.stdout.strip() == str(prefix / "share" / "man" / "man1" / "keyctl-totp.1"), found.stderr
    assert Path(found.stdout.strip()).read_text() == (MAN / "keyctl-totp.1").read_text()


def test_man_install_into_an_unwritable_place_is_one_line_and_exit_7(tmp_path: Path) -> None:
    (tmp_path / "share").write_text("a file where the directory would go")
    result = run_keyctl(["man", "--install", "--prefix", str(tmp_path)])
    assert result.exit_code == ExitCode.STATE
    assert result.stderr.startswith(f"error: cannot write the man pages to {tmp_path}/share/man/man1")
    assert "Traceback" not in result.stderr


def test_man_without_install_lists_the_pages(cli: Any) -> None:
    result = cli("man")
    assert result.exit_code == 0
    assert sorted(result.stdout.split()) == sorted(page.name for page in MAN.glob("*.1"))
    assert "keyctl man --install" in result.stderr
