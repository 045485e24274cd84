"""The root Typer app: global options, sub-app registration, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from keyctl import __version__
from keyctl.errors import ExitCode, KeyctlError
from keyctl.logs import configure_logging

# (command name, module defining ``app``, one-line help). Each module imports heavy libraries inside its
# commands, never at module level, so that building the whole tree stays cheap.
SUB_APPS: list[tuple[str, str, str]] = [
    ("mds", "keyctl.cli.mds", "FIDO metadata: model names, certification, security alerts."),
    ("key", "keyctl.cli.key", "Manage a security key: PIN, credentials, settings, reset."),
    ("audit", "keyctl.cli.audit", "Audit registered passkeys and connected keys against FIDO metadata."),
    ("virtual", "keyctl.cli.virtual", "Virtual FIDO2 authenticators for CI and tests (CTAP2 over CTAPHID)."),
    ("totp", "keyctl.cli.totp", "TOTP/HOTP codes from secrets kept in the OS keyring."),
    ("server", "keyctl.cli.server", "Run keyctl's reference sign-in server (relying party); add accounts."),
]
# (command name, module, function name): top-level commands such as ``keyctl login``.
COMMANDS: list[tuple[str, str, str]] = [
    ("doctor", "keyctl.cli.doctor", "doctor"),
    ("register", "keyctl.cli.ceremony", "register"),
    ("login", "keyctl.cli.ceremony", "login"),
    ("demo", "keyctl.cli.ceremony", "demo"),
    ("enroll", "keyctl.cli.enroll", "enroll"),
]

_debug = False


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"keyctl {__version__}\n")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Log to stderr and show tracebacks.")] = False,
    traffic: Annotated[
        bool,
        typer.Option("--traffic", help="Log raw CTAP/HTTP traffic (shows secrets: never in shared logs)."),
    ] = False,
) -> None:
    """keyctl: FIDO2 security keys, passkeys and one-time codes from the terminal."""
    global _debug
    _debug = debug or traffic
    configure_logging(debug=debug, traffic=traffic)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="keyctl",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name, module_name, help_text in SUB_APPS:
        module = importlib.import_module(module_name)
        app.add_typer(module.app, name=name, help=help_text)
    for name, module_name, function_name in COMMANDS:
        module = importlib.import_module(module_name)
        app.command(name)(getattr(module, function_name))
    return app


def report(error: KeyctlError) -> None:
    """Print an expected failure as one line (plus a remedy line when there is one)."""
    sys.stderr.write(f"error: {error.message}\n")
    if error.remedy:
        sys.stderr.write(f"  fix: {error.remedy}\n")


def run(args: Sequence[str]) -> int:
    global _debug
    _debug = "--debug" in args or "--traffic" in args
    try:
        build_app()(args=list(args), prog_name="keyctl")
    except KeyctlError as error:
        if _debug:
            traceback.print_exc()
        report(error)
        return int(error.exit_code)
    except Exception as error:  # a bug: keep the message short unless --debug
        if _debug:
            traceback.print_exc()
        else:
            logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        sys.stderr.write(f"error: unexpected {type(error).__name__}: {error}\n  fix: rerun with --debug\n")
        return int(ExitCode.ERROR)
    return int(ExitCode.OK)
