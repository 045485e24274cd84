"""The root Typer app: global options, sub-app registration, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

from keyctl import __version__
from keyctl.cli import rich_hidden
from keyctl.errors import ExitCode, InvalidInput, KeyctlError
from keyctl.logs import configure_logging

with rich_hidden():  # typer would import rich at once (see keyctl.cli); the commands import it if needed
    import click
    import typer
    from typer.core import TyperGroup

# (command name, module defining ``app``, one-line help). Each module imports heavy libraries inside its
# commands, never at module level, so that building the whole tree stays cheap.
SUB_APPS: list[tuple[str, str, str]] = [
    ("mds", "keyctl.cli.mds", "FIDO metadata: model names, certification, security alerts."),
    ("key", "keyctl.cli.key", "A security key: PIN, credentials, fingerprints, settings, reset."),
    ("audit", "keyctl.cli.audit", "Audit passkeys and keys against FIDO metadata."),
    ("virtual", "keyctl.cli.virtual", "Virtual FIDO2 authenticators for CI and tests."),
    ("totp", "keyctl.cli.totp", "TOTP/HOTP codes (secrets in the OS keyring, or a file in CI)."),
    ("server", "keyctl.cli.server", "Run the reference sign-in server (no subcommand), add accounts."),
    ("admin", "keyctl.cli.admin", "A running server's admin API: users, passkeys, blocks, audit."),
]
# (command name, module, function name, one-line summary): top-level commands such as ``keyctl login``.
# Summaries fit the command list of an 80-column help (click cuts longer ones with "...").
COMMANDS: list[tuple[str, str, str, str]] = [
    (
        "doctor",
        "keyctl.cli.doctor",
        "doctor",
        "What stops keyctl from reaching keys or the keyring, and fixes.",
    ),
    (
        "register",
        "keyctl.cli.ceremony",
        "register",
        "Register a passkey for an account (password and 2FA if needed).",
    ),
    ("login", "keyctl.cli.ceremony", "login", "Sign in with a passkey, or with a password and 2FA."),
    ("demo", "keyctl.cli.ceremony", "demo", "The whole sign-in journey against a throwaway server."),
    ("enroll", "keyctl.cli.enroll", "enroll", "Enroll security keys for a batch of users."),
    ("man", "keyctl.cli.manpages", "man", "Install the man pages: keyctl(1) and one per command."),
]

_debug = False


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"keyctl {__version__}\n")
        raise typer.Exit()


def _show_completion(ctx: click.Context, shell: str | None) -> None:
    if shell is not None:
        from keyctl.cli.completion import script

        sys.stdout.write(script(ctx.command, shell))
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    show_completion: Annotated[
        str | None,
        typer.Option(
            "--show-completion",
            click_type=click.Choice(["bash", "zsh", "fish"]),
            metavar="SHELL",
            callback=_show_completion,
            is_eager=True,
            help="Print the completion script for SHELL (bash, zsh or fish) and exit.",
        ),
    ] = None,
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


GLOBAL_FLAGS = ("--debug", "--traffic")  # root options that may also come after the subcommand
COMPLETE_VAR = "_KEYCTL_COMPLETE"  # set by the shell completion scripts (keyctl.cli.completion)


class _PipeClosed(Exception):
    """stdout's reader went away (``| head``): click would turn the BrokenPipeError into exit 1."""


class KeyctlGroup(TyperGroup):
    """Every command group: suggests the closest command for a mistyped one; a closed pipe ends quietly."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as error:
            import difflib  # only for a mistyped command: not on every start-up

            visible = [name for name, command in self.commands.items() if not command.hidden]
            close = difflib.get_close_matches(args[0], visible, n=1, cutoff=0.5) if args else []
            if close:
                error.message += f" Did you mean '{close[0]}'?"
            raise

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed() from None


def _use_keyctl_group(app: typer.Typer) -> None:
    for group in app.registered_groups:
        group.cls = KeyctlGroup
        if group.typer_instance is not None:
            _use_keyctl_group(group.typer_instance)


def _hoisted(args: Sequence[str]) -> list[str]:
    """``--debug``/``--traffic`` anywhere before ``--`` move in front, where the root app reads them."""
    end = list(args).index("--") if "--" in args else len(args)
    flags = [arg for arg in args[:end] if arg in GLOBAL_FLAGS]
    return [*flags, *(arg for arg in args[:end] if arg not in GLOBAL_FLAGS), *args[end:]]


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
        cls=KeyctlGroup,
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
    for name, module_name, function_name, summary in COMMANDS:
        if only in (None, name):
            module = importlib.import_module(module_name)
            app.command(name, short_help=summary)(getattr(module, function_name))
    _use_keyctl_group(app)
    return app


def command_tree() -> click.Group:
    """The click command of the whole app (what --help, completion and the man pages describe)."""
    root = typer.main.get_command(build_app())
    assert isinstance(root, click.Group)
    return root


def report(error: KeyctlError) -> None:
    """Print an expected failure as one line (plus a remedy line when there is one)."""
    sys.stderr.write(f"error: {error.message}\n")
    if error.remedy:
        sys.stderr.write(f"  fix: {error.remedy}\n")


def run(args: Sequence[str]) -> int:
    global _debug
    if os.environ.get(COMPLETE_VAR):  # a completion script asking (with no arguments: no fast path)
        from keyctl.cli.completion import complete

        return complete(command_tree(), os.environ[COMPLETE_VAR])
    args = _hoisted(args)
    _debug = args[:1] in (["--debug"], ["--traffic"])
    try:
        command = typer.main.get_command(build_app(_named_command(args)))
        code = command.main(args=args, prog_name="keyctl", standalone_mode=False)
    except click.MissingParameter as error:  # a usage error (exit 2), though click files it as a bad value
        error.show()
        return error.exit_code
    except click.BadParameter as error:  # a malformed option value: reported as keyctl's own checks are
        where = error.param.opts[0] if error.param is not None and error.param.opts else "a value"
        path = error.ctx.command_path if error.ctx is not None else "keyctl"
        report(InvalidInput(f"{where}: {error.message.rstrip('.')}", f"see: {path} --help"))
        return int(ExitCode.INVALID_INPUT)
    except click.ClickException as error:  # usage errors: click's own message and exit code 2
        error.show()
        return error.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C, at a prompt or anywhere else
        sys.stderr.write("\ncanceled\n")
        return int(ExitCode.INTERRUPTED)
    except _PipeClosed:
        from keyctl.cli.fast import pipe_closed

        return pipe_closed()
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
    return code if isinstance(code, int) else int(ExitCode.OK)
