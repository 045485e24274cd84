#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then lint, types and pytest against
# a real Secret Service. Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
python=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip_log=$(mktemp)
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >"$pip_log" 2>&1 \
  || { cat "$pip_log" >&2; exit 1; }
rm -f "$pip_log"
export PATH="$PWD/.venv/bin:$PATH"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
set +e
dbus-run-session -- bash scripts/with-secret-service.sh pytest "$@"
status=$?
set -e
# pytest's exit code 5 means no test ran: that is a failure here, never a pass.
[ "$status" -eq 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
exit "$status"
