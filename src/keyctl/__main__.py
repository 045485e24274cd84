"""Entry point of the ``keyctl`` console script and of ``python -m keyctl``."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    from keyctl.cli.app import run

    sys.exit(run(args))


if __name__ == "__main__":
    main()
