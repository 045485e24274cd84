from __future__ import annotations

import re
import types
from typing import Any

import pytest
import typer

from keyctl import __version__
from keyctl.cli import app as app_module
from keyctl.errors import ExitCode, NotFound

from .conftest import run_keyctl


def test_version_as_a_process() -> None:
    result = run_keyctl(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"keyctl {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_no_arguments_prints_usage_and_fails(cli: Any) -> None:
    result = cli()
    assert result.exit_code == ExitCode.USAGE
    assert "Usage" in result.stdout + result.stderr


def test_unknown_command_is_a_usage_error(cli: Any) -> None:
    result = cli("no-such-command")
    assert result.exit_code == ExitCode.USAGE


def _fake_group(error: Exception) -> types.ModuleType:
    module = types.ModuleType("fake_group")
    module.app = typer.Typer()  # type: ignore[attr-defined]

    @module.app.command()  # type: ignore[attr-defined]
    def boom() -> None:
        raise error

    @module.app.command()  # type: ignore[attr-defined]
    def fine() -> None:
        pass

    return module


@pytest.fixture
def fake_group(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(error: Exception) -> None:
        module = _fake_group(error)
        monkeypatch.setitem(__import__("sys").modules, "fake_group", module)
        monkeypatch.setattr(app_module, "SUB_APPS", [("fake", "fake_group", "test only")])

    return install


def test_expected_error_is_one_line_with_remedy_and_exit_code(cli: Any, fake_group: Any) -> None:
    fake_group(NotFound("no TOTP entry named 'x'", "run 'keyctl totp list' to see the names"))
    result = cli("fake", "boom")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stderr.splitlines() == [
        "error: no TOTP entry named 'x'",
        "  fix: run 'keyctl totp list' to see the names",
    ]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(cli: Any, fake_group: Any) -> None:
    fake_group(NotFound("missing"))
    result = cli("--debug", "fake", "boom")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "Traceback" in result.stderr


def test_unexpected_error_is_exit_1_without_traceback(cli: Any, fake_group: Any) -> None:
    fake_group(ZeroDivisionError("division by zero"))
    result = cli("fake", "boom")
    assert result.exit_code == ExitCode.ERROR
    assert "unexpected ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stderr


def test_success_is_exit_0(cli: Any, fake_group: Any) -> None:
    fake_group(NotFound("unused"))
    assert cli("fake", "fine").exit_code == 0


def test_exit_codes_are_distinct() -> None:
    values = [code.value for code in ExitCode]
    assert len(values) == len(set(values))


def test_every_registered_group_loads_and_has_help(cli: Any) -> None:
    for name, _module, _help in app_module.SUB_APPS:
        result = cli(name, "--help")
        assert result.exit_code == 0, (name, result.stderr)
        assert "Usage" in result.stdout
