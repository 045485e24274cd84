"""The reference pages generated from the code are current: the server's JSON API (docs/api.md) and the
exit codes (docs/exit-codes.md). KEYCTL_WRITE_DOCS=1 rewrites them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keyctl.server import web
from tests.docs import reference
from tests.docs.generated import check_block

RERUN = "pytest tests/docs/test_reference.py"


@pytest.mark.parametrize("group", list(reference.API_GROUPS))
def test_the_api_tables_are_the_servers_routes(group: str) -> None:
    check_block("api.md", group, reference.api_table(group), RERUN)


def test_every_route_is_in_one_table() -> None:
    paths = [e.path for e in reference.endpoints()]
    for path in paths:
        assert sum(matches(path) for matches in reference.API_GROUPS.values()) == 1, path


def test_the_api_error_table_is_the_servers_catalogue() -> None:
    check_block("api.md", "api-errors", reference.api_errors(), RERUN)


def test_every_error_code_the_server_raises_is_in_the_catalogue() -> None:
    """A PolicyError("code", ...) anywhere in the server names a code of web.ERRORS (else a KeyError
    would answer 500 instead of the documented status)."""
    server = Path(web.__file__).parent
    raised = {
        code
        for path in server.rglob("*.py")
        for code in re.findall(r'PolicyError\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8"))
    }
    assert raised, "no PolicyError found: the pattern is out of date"
    assert raised <= set(web.ERRORS), raised - set(web.ERRORS)


def test_the_exit_code_table_is_the_catalogue() -> None:
    check_block("exit-codes.md", "exit-codes", reference.exit_codes(), RERUN)
