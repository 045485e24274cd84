"""What a keyctl process imports and how its parser answers: the start-up work of every command."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr

import pytest
from rich.console import Console

from keyctl.cli.app import _named_command
from keyctl.cli.output import Terminal

from ..conftest import run_keyctl

# Heavy modules a command only needs for its own output, never for parsing or plain lines.
RICH_ONLY = ("rich.", "typer.rich_utils", "markdown_it", "pygments", "httpx._main")


def imported(args: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run keyctl with -X importtime; the finished process and the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keyctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    return proc, modules


def test_version_imports_neither_typer_nor_click() -> None:
    proc, modules = imported(["--version"])
    assert proc.returncode == 0
    assert not {"typer", "click"} & modules


def test_a_command_through_typer_imports_no_rich() -> None:
    proc, modules = imported(["virtual", "ci-key"])
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "typer" in modules  # the normal path, not a fast path
    assert not [name for name in modules if name.startswith(RICH_ONLY)]


def test_styled_output_still_goes_through_rich() -> None:
    proc, modules = imported(
        ["login", "--server", "http://localhost:9", "--origin", "http://localhost:8",
         "--insecure-origin-override", "--authenticator", "virtual:nothing"]
    )  # fmt: skip
    assert proc.returncode == 20  # nothing listens on port 9
    assert "warning: claiming origin http://localhost:8" in proc.stderr  # a yellow line
    assert "rich.console" in modules


def test_a_missing_required_option_is_a_usage_error() -> None:
    result = run_keyctl(["login", "--authenticator", "virtual:nothing"])
    assert result.exit_code == 2
    assert "Missing option '--server'." in result.stderr  # without click 8.2's "(env var: 'None')"
    no_user = run_keyctl(["register", "--server", "https://example.com"])
    assert no_user.exit_code == 2
    assert "Missing option '--user'." in no_user.stderr


def test_no_required_option_claims_an_environment_variable() -> None:
    """click 8.2 ends a missing option's error with "(env var: 'None')" unless show_envvar is off."""
    import click
    import typer

    from keyctl.cli.app import build_app

    def required(command: click.Command, path: str) -> list[tuple[str, click.Option]]:
        if isinstance(command, click.Group):
            return [
                found for name, sub in command.commands.items() for found in required(sub, f"{path} {name}")
            ]
        return [(path, p) for p in command.params if isinstance(p, click.Option) and p.required]

    options = required(typer.main.get_command(build_app()), "keyctl")
    assert {path for path, _ in options} >= {"keyctl login", "keyctl register"}
    assert [(path, option.opts) for path, option in options if option.show_envvar] == []


def test_help_lists_every_command_and_a_command_line_builds_only_its_command() -> None:
    root = run_keyctl(["--help"])
    assert root.exit_code == 0
    for name in ("login", "register", "demo", "totp", "virtual", "server", "key"):
        assert f"  {name} " in root.stdout
    login = run_keyctl(["--debug", "login", "--help"])
    assert login.exit_code == 0
    assert "--device SPEC" in login.stdout
    unknown = run_keyctl(["logn"])
    assert unknown.exit_code == 2
    assert "No such command 'logn'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["login", "--server", "x"], "login"),
        (["--debug", "--traffic", "totp", "list"], "totp"),
        (["--help", "login"], None),
        (["--version"], None),
        (["logn"], None),
        ([], None),
    ],
)
def test_named_command(args: list[str], named: str | None) -> None:
    assert _named_command(args) == named


@pytest.mark.parametrize(
    "message", ["plain", "[bold]not markup[/bold] :smile:", "ünïcode … 'quotes'", "a\ttab"]
)
def test_status_lines_are_what_rich_would_print(message: str) -> None:
    ours, theirs = io.StringIO(), io.StringIO()
    with redirect_stderr(ours):
        Terminal().status(message)
    Console(file=theirs, markup=False, highlight=False, emoji=False, soft_wrap=True).print(message)
    assert ours.getvalue() == theirs.getvalue()


def test_the_virtual_authenticator_imports_a_command_module_on_its_first_use() -> None:
    """A sign-in sends getInfo, clientPIN and getAssertion: the other command modules are not loaded."""
    code = (
        "import sys\n"
        "from fido2.ctap2 import Ctap2\n"
        "from keyctl.authenticator import VirtualAuthenticator\n"
        "from keyctl.hid.inprocess import connect\n"
        "Ctap2(connect(VirtualAuthenticator())).get_info()\n"
        "prefix = 'keyctl.authenticator.commands.'\n"
        "print(' '.join(m.removeprefix(prefix) for m in sys.modules if m.startswith(prefix)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
    loaded = set(proc.stdout.split())
    assert "get_info" in loaded
    assert not {"make_credential", "bio_enrollment", "credential_management", "config", "reset"} & loaded
