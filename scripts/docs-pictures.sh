#!/usr/bin/env bash
# Regenerates every generated part of the docs: the outputs of the examples, the terminal pictures, the
# layer diagram, the reference tables, and the screenshots of the server's page (with their facts), by
# running the tests that check them with KEYCTL_WRITE_DOCS=1. Usage: bash scripts/docs-pictures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" KEYCTL_WRITE_DOCS=1
dbus-run-session -- bash scripts/with-secret-service.sh pytest -q -p no:cacheprovider \
  tests/docs tests/server/test_journey_page.py tests/server/test_step_up_page.py \
  tests/server/test_captcha.py tests/server/test_session_expiry.py tests/server/test_page_errors.py
