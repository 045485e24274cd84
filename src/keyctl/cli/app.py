"""The root Typer app: global options, sub-app registration, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

from keyctl import __version__
from keyctl.cli import rich_hidden
from keyctl.errors import ExitCode, KeyctlError
from keyctl.logs import configure_logging

with rich_hidden():  # typer would import rich at once (see keyctl.cli); the commands import it if needed
    import typer

# (command name, module defining ``app``, one-line help). Each module imports heavy libraries inside its
# commands, never at module level, so that building the whole tree stays cheap.
SUB_APPS: list[tuple[str, str, str]] = [
    ("mds", "keyctl.cli.mds", "FIDO metadata: model names, certification, security alerts."),
    ("key", "keyctl.cli.key", "Manage a security key: PIN, credentials, settings, reset."),
    ("audit", "keyctl.cli.audit", "Audit registered passkeys and connected keys against FIDO metadata."),
    ("virtual", "keyctl.cli.virtual", "Virtual FIDO2 authenticators for CI and tests (CTAP2 over CTAPHID)."),
    ("totp", "keyctl.cli.totp", "TOTP/HOTP codes; secrets in the OS keyring (CI: an encrypted file)."),
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


def _named_command(args: Sequence[str]) -> str | None:
    """The command a command line runs, when only the root's --debug/--traffic come before it.

    Building the Typer tree imports every command module and makes click commands of all their options:
    a command line that names its command only needs that one (help and unknown names need them all)."""
    for arg in args:
        if arg not in ("--debug", "--traffic"):
            known = {name for name, *_ in SUB_APPS} | {name for name, *_ in COMMANDS}
            return arg if arg in known else None
    return None


def build_app(only: str | None = None) -> typer.Typer:
    """The root app with every command, or with just the command named ``only``."""
    app = typer.Typer(
        name="keyctl",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name, module_name, help_text in SUB_APPS:
        if only in (None, name):
            module = importlib.import_module(module_name)
            app.add_typer(module.app, name=name, help=help_text)
    for name, module_name, function_name in COMMANDS:
        if only in (None, name):
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
        build_app(_named_command(args))(args=list(args), prog_name="keyctl")
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
