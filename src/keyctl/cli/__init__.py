"""The command line: Typer apps, one module per command group (the only layer that imports typer or rich).

typer 0.16 imports rich (with markdown-it and pygments) as soon as rich is installed, for its help panels
and error boxes: ~0.12 s of every keyctl process, more than a `keyctl login` needs for its own work.
keyctl.cli.app, the first module of a keyctl process to import typer, imports it with rich hidden
(typer-slim's mode, which typer supports), so help and usage errors come in click's plain format; rich
stays available to the commands that draw tables or spinners (keyctl.cli.output imports it on first use).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def rich_hidden() -> Iterator[None]:
    """Within the block, ``import rich`` raises ImportError (as if rich were not installed)."""
    saved = sys.modules.get("rich")
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["rich"]
        else:
            sys.modules["rich"] = saved
