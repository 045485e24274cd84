"""Shell completion for bash, zsh and fish: click's completion protocol over the whole command tree.

``keyctl --show-completion SHELL`` prints the script a shell loads; on each Tab the script runs ``keyctl``
with no arguments and the words so far in the environment (``_KEYCTL_COMPLETE``, ``COMP_WORDS``, ...);
keyctl.cli.app.run answers it before parsing anything, so the argv-matched fast path of ``keyctl totp
code`` (keyctl.cli.fast) never sees a completion request."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class, shell_complete

from keyctl.cli.app import COMPLETE_VAR


def complete(root: click.Command, instruction: str) -> int:
    """Answer the script's request (``bash_complete``, ``zsh_complete``, ``fish_complete``); exit code."""
    return shell_complete(root, {}, "keyctl", COMPLETE_VAR, instruction)


def script(root: click.Command, shell: str) -> str:
    """The script ``shell`` loads to complete keyctl's command lines."""
    script_class = get_completion_class(shell)
    assert script_class is not None  # bash, zsh and fish: click has them all
    return script_class(root, {}, "keyctl", COMPLETE_VAR).source().rstrip("\n") + "\n"
