"""The start-up fast path: ``keyctl --version`` and ``keyctl totp code NAME [--json]`` without Typer.

Only the argv matching lives here; the work is done by the same functions the Typer commands call
(``print_code`` is the body of ``keyctl totp code``). Expected failures are printed by the same
``report`` as the normal path; anything unexpected, and every other command line, takes the normal path.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keyctl import __version__
from keyctl.errors import ExitCode, KeyctlError

if TYPE_CHECKING:
    from keyctl.totp.codes import Code


def version_line() -> str:
    return f"keyctl {__version__}\n"


def code_text(name: str, code: Code, json_mode: bool) -> str:
    if not json_mode:
        return code.code + "\n"
    data = {
        "name": name,
        "code": code.code,
        "type": "hotp" if code.counter is not None else "totp",
        "remaining": code.remaining,
        "period": code.period,
        "counter": code.counter,
    }
    return json.dumps(data, indent=2) + "\n"


def print_code(name: str, json_mode: bool) -> None:
    from keyctl.totp.vault import current_code

    code = current_code(name)
    sys.stdout.write(code_text(name, code, json_mode))
    sys.stdout.flush()


def pipe_closed() -> int:
    """stdout's reader went away (``keyctl ... | head``): end quietly with 141 (128 + SIGPIPE), as a
    shell tool killed by SIGPIPE would, without Python's "Exception ignored" at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return int(ExitCode.PIPE_CLOSED)


def run_fast(args: Sequence[str]) -> int | None:
    """The exit code of a fast command, or None when ``args`` need the normal (Typer) path."""
    if list(args) == ["--version"]:
        sys.stdout.write(version_line())
        return 0
    if list(args[:2]) != ["totp", "code"]:
        return None
    rest = list(args[2:])
    json_mode = rest.count("--json") == 1
    names = [arg for arg in rest if arg != "--json"]
    if rest.count("--json") > 1 or len(names) != 1 or names[0].startswith("-"):
        return None
    try:
        print_code(names[0], json_mode)
    except KeyctlError as error:
        from keyctl.cli.app import report

        report(error)
        return int(error.exit_code)
    except BrokenPipeError:
        return pipe_closed()
    except Exception:  # a bug: let the normal path run again and report it the usual way (--debug)
        return None
    return 0
