"""The one Terminal object every command prints through.

Data goes to stdout (a Rich table for people, or JSON with ``--json``); prompts, progress and status go
to stderr. Rich markup is off everywhere: RP ids, user names and account labels come from outside and
must never be parsed as markup. Rich is imported only for what needs it (tables, colours, spinners):
plain lines are written as they are, so commands that print nothing else never pay its ~50 ms import.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyctl.errors import Canceled, InvalidInput

if TYPE_CHECKING:
    from rich.console import Console

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ENV_DEVICE = "KEYCTL_DEVICE"


def check_device(spec: str | None) -> str | None:
    """One parser for every --device: keyctl.hid.spec (a typo is exit 3 here, not "no device" later)."""
    from keyctl.hid.spec import parse

    if spec is not None and spec != "platform":
        parse(spec)
    return spec


def _check_devices(specs: list[str] | None) -> list[str]:
    for spec in specs or []:
        check_device(spec)
    return specs or []


DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        "-d",
        metavar="SPEC",
        envvar=ENV_DEVICE,
        show_envvar=False,
        callback=check_device,
        help=f"The authenticator: usb, usb:PATH, udp:HOST:PORT or virtual:NAME (else ${ENV_DEVICE}).",
    ),
]
DevicesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--device",
        "-d",
        metavar="SPEC",
        callback=_check_devices,
        help="Only this authenticator (repeatable; default: every one keyctl can find).",
    ),
]
RevealOption = Annotated[
    bool, typer.Option("--reveal", help="Print the secret even though stdout is a terminal.")
]


def secret_out(value: str, reveal: bool, what: str) -> None:
    """Secrets go to a pipe or file; to a terminal only when asked for explicitly."""
    if sys.stdout.isatty() and not reveal:
        raise InvalidInput(
            f"refusing to print {what} on a terminal",
            "redirect stdout to a file or a CI secret store, or pass --reveal",
        )
    sys.stdout.write(value + "\n")
    sys.stdout.flush()


class Terminal:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode

    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(markup=False, highlight=False, emoji=False, soft_wrap=True)

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """One line of data on stdout, written verbatim."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def table(
        self, columns: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
    ) -> None:
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        self.out.print(table)

    def status(self, message: str) -> None:
        """One line of progress on stderr, as rich would print it without markup."""
        sys.stderr.write(message.expandtabs() + "\n")
        sys.stderr.flush()

    def success(self, message: str) -> None:
        self.err.print(message, style="green")

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {message}", style="yellow")

    def confirm(self, question: str, assume_yes: bool) -> None:
        """Ask a yes/no question on stderr; raise Canceled unless the answer is yes."""
        if assume_yes:
            return
        if not sys.stdin.isatty():
            raise Canceled(f"{question} needs a confirmation", "pass --yes to confirm without a prompt")
        answer = typer.confirm(question, default=False, err=True)
        if not answer:
            raise Canceled("canceled, nothing was changed")
