"""Man pages built from the command tree: keyctl(1), and keyctl-NAME(1) for every top-level command and
command group (a group's page holds all its subcommands). Options, arguments and help text are the ones
``--help`` shows; EXIT STATUS is keyctl.errors.MEANINGS (Markdown backquotes dropped). The repository
keeps a generated copy in man/ (scripts/man-pages.sh writes it, the wheel ships it to share/man/man1);
``keyctl man --install`` writes the pages of the installed version for man(1)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import click
import typer

from keyctl import __version__
from keyctl.cli.app import command_tree
from keyctl.errors import MEANINGS, StateError


def _escape(text: str) -> str:
    """Plain text as roff: backslashes and dashes escaped (``\\-`` stays an ASCII hyphen-minus)."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def _line(text: str) -> str:
    """One roff text line: a leading ``.`` or ``'`` would be read as a request."""
    escaped = _escape(text)
    return "\\&" + escaped if escaped.startswith((".", "'")) else escaped


def _paragraphs(help_text: str | None) -> list[str]:
    """Help text as roff paragraphs, as click's --help wraps it (``\\b`` keeps a paragraph's lines)."""
    text = inspect.cleandoc(help_text or "").partition("\f")[0]
    lines: list[str] = []
    for paragraph in (part for part in text.split("\n\n") if part.strip()):
        if lines:
            lines.append(".PP")
        if paragraph.startswith("\b\n"):
            lines += [".nf", *(_line(line) for line in paragraph[2:].splitlines()), ".fi"]
        else:
            lines.append(_line(" ".join(line.strip() for line in paragraph.splitlines())))
    return lines


def _visible(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    commands = ((name, group.get_command(ctx, name)) for name in group.list_commands(ctx))
    return [(name, command) for name, command in commands if command is not None and not command.hidden]


def _usage(command: click.Command, ctx: click.Context) -> str:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    return f"\\fB{_escape(ctx.command_path)}\\fR {_escape(pieces)}".rstrip()


def _parameters(params: list[click.Parameter], ctx: click.Context) -> list[str]:
    lines: list[str] = []
    for param in params:
        record = param.get_help_record(ctx)
        if record is not None:
            names, help_text = record
            lines += [".TP", f"\\fB{_escape(names)}\\fR", _line(help_text)]
    return lines


def _commands(group: click.Group, ctx: click.Context) -> list[str]:
    """Every subcommand of ``group``, nested groups included: usage, help, options."""
    lines: list[str] = []
    for name, command in _visible(group, ctx):
        sub = click.Context(command, info_name=name, parent=ctx)
        lines += [
            ".SS " + _usage(command, sub),
            *_paragraphs(command.help),
            *_parameters(command.params, sub),
        ]
        if isinstance(command, click.Group):
            lines += _commands(command, sub)
    return lines


def _leaves(command: click.Command, ctx: click.Context) -> list[str]:
    """Usage lines of every runnable command under ``command`` (itself, if it takes no subcommand)."""
    if not isinstance(command, click.Group):
        return [_usage(command, ctx)]
    lines = [_usage(command, ctx)] if command.invoke_without_command else []
    for name, sub in _visible(command, ctx):
        lines += _leaves(sub, click.Context(sub, info_name=name, parent=ctx))
    return lines


def _page(title: str, summary: str, command: click.Command, ctx: click.Context, see_also: str) -> str:
    root = ctx.parent is None
    lines = [
        f'.TH {_escape(title.upper())} 1 "" "keyctl {__version__}" "keyctl manual"',
        ".SH NAME",
        f"{_escape(title)} \\- {_escape(summary)}",
        ".SH SYNOPSIS",
        ".nf",
        *(_leaves(command, ctx) if not root else [_usage(command, ctx)]),
        ".fi",
        ".SH DESCRIPTION",
        *_paragraphs(command.help),
    ]
    params = command.get_params(ctx) if root else command.params
    if any(param.get_help_record(ctx) for param in params):
        lines += [".SH OPTIONS", *_parameters(params, ctx)]
    if isinstance(command, click.Group):
        if root:
            lines.append(".SH COMMANDS")
            for name, sub in _visible(command, ctx):
                lines += [".TP", f"\\fBkeyctl\\-{_escape(name)}\\fR(1)", _line(sub.get_short_help_str(1000))]
        else:
            lines += [".SH COMMANDS", *_commands(command, ctx)]
    lines.append(".SH EXIT STATUS")
    for code, meaning in MEANINGS.items():
        lines += [".TP", f"\\fB{int(code)}\\fR", _line(meaning.replace("`", ""))]
    lines += [".SH SEE ALSO", see_also]
    return "\n".join(lines) + "\n"


def pages(root: click.Group) -> dict[str, str]:
    """File name -> roff source of every page."""
    ctx = click.Context(root, info_name="keyctl", **root.context_settings)
    commands = _visible(root, ctx)
    see_also = ",\n".join(f".BR keyctl\\-{_escape(name)} (1)" for name, _ in commands)
    result = {
        "keyctl.1": _page("keyctl", "FIDO2 security keys, passkeys and one-time codes", root, ctx, see_also)
    }
    for name, command in commands:
        sub = click.Context(command, info_name=name, parent=ctx)
        summary = command.get_short_help_str(1000).rstrip(".")
        result[f"keyctl-{name}.1"] = _page(f"keyctl-{name}", summary, command, sub, ".BR keyctl (1)")
    return result


def write_pages(directory: Path) -> list[Path]:
    """Write every page into ``directory`` (created if missing); the files written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in pages(command_tree()).items():
            (directory / name).write_text(text)
            written.append(directory / name)
    except OSError as error:
        raise StateError(
            f"cannot write the man pages to {directory}: {error.strerror}",
            "choose a directory you can write with --prefix",
        ) from None
    return written


def man(
    install: Annotated[
        bool, typer.Option("--install", help="Write the pages to PREFIX/share/man/man1.")
    ] = False,
    prefix: Annotated[
        Path | None,
        typer.Option("--prefix", help="Where --install writes: PREFIX/share/man/man1 (default: ~/.local)."),
    ] = None,
) -> None:
    """Install keyctl's man pages: keyctl(1) and one page per command (keyctl-totp(1), ...).

    man finds pages under ~/.local/share/man when ~/.local/bin is on PATH; for another prefix, add
    PREFIX/share/man to MANPATH. Without --install, list the pages."""
    from keyctl.cli.output import Terminal

    terminal = Terminal()
    if not install:
        for name in pages(command_tree()):
            terminal.line(name)
        terminal.status("install them with: keyctl man --install [--prefix PREFIX]")
        return
    directory = (prefix or Path.home() / ".local") / "share" / "man" / "man1"
    written = write_pages(directory)
    terminal.status(f"installed {len(written)} man pages in {directory}")
