"""Reading secrets (PINs, passwords, TOTP secrets) without ever taking them from argv.

Order: the environment variable named by ``--pin-env VAR`` (or similar), else one line of stdin when
stdin is not a terminal, else a hidden prompt on the terminal (asked twice for a new secret).
"""

from __future__ import annotations

import getpass
import os
import sys

from keyctl.errors import Canceled, InvalidInput


def read_secret(what: str, env_var: str | None = None, confirm: bool = False, stdin_line: bool = True) -> str:
    """Return the secret described by ``what`` ("PIN", "new PIN", "password", ...)."""
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            state = "is empty" if value == "" else "is not set"
            raise InvalidInput(f"environment variable {env_var} {state}", f"export {env_var} with the {what}")
        return value
    if not sys.stdin.isatty():
        if not stdin_line:
            raise InvalidInput(f"no {what} given and no terminal to ask on", f"pass the {what} in an env var")
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise InvalidInput(f"expected the {what} on stdin, got nothing", f"pipe the {what} in")
        return line
    try:
        value = getpass.getpass(f"{what[0].upper()}{what[1:]}: ", stream=sys.stderr)
        if confirm and getpass.getpass(f"Repeat the {what}: ", stream=sys.stderr) != value:
            raise InvalidInput(f"the repeated {what} differs from the first", "type the same value twice")
    except EOFError:  # Ctrl-D; Ctrl-C (KeyboardInterrupt) is exit 130, as everywhere
        raise Canceled(f"no {what} entered, nothing was changed") from None
    if not value:
        raise InvalidInput(f"the {what} is empty", f"type a {what}")
    return value
