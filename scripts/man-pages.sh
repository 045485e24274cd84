#!/usr/bin/env bash
# Regenerates the man pages kept in man/ (the wheel ships them as share/man/man1) from the command tree,
# with the command users run: keyctl man --install. Run it after changing a command, an option's help or
# an exit code; tests/cli/test_manpages.py fails while man/ differs from what it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m keyctl man --install --prefix "$tmp"
rm -f man/*.1
cp "$tmp"/share/man/man1/*.1 man/
