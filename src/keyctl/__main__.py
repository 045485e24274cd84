"""Entry point of the ``keyctl`` console script and of ``python -m keyctl``.

``keyctl --version`` and ``keyctl totp code NAME [--json]`` are answered without importing Typer (see
keyctl.cli.fast); every other command line goes through the Typer app.
"""

from __future__ import annotations

import sys


def main() -> None:
    # httpx imports its own command line (httpx._main: click, rich, pygments; ~85 ms) inside a
    # try/except ImportError meant for installs without its [cli] extra. keyctl never runs it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    args = sys.argv[1:]
    try:
        from keyctl.cli.fast import run_fast

        code = run_fast(args)
        if code is None:
            from keyctl.cli.app import run

            code = run(args)
    except KeyboardInterrupt:  # Ctrl-C outside a command (while importing): as a shell reports SIGINT
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
