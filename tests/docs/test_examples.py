"""The docs' shell examples run (tests/docs/examples.py says how they are marked and what world they run
in): each page's examples in order, against a throwaway reference server and virtual authenticators, with
their exit codes checked; the output a page shows is this run's (KEYCTL_WRITE_DOCS=1 writes it), and so
are the terminal pictures in docs/terminal/."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyctl.server import start
from tests.docs import examples, pictures
from tests.docs.generated import ROOT, WRITE
from tests.webauthn.conftest import PASSWORD, Clock, Reference, account_with_totp

RERUN = "pytest tests/docs/test_examples.py"
RUN: dict[str, int] = {}  # page -> examples run, for the summary line


@dataclass(frozen=True)
class World:
    env: dict[str, str]
    home: Path
    work: Path


@pytest.fixture
def world(tmp_path: Path, isolated_home: Path) -> Iterator[World]:
    """A reference server with a pipeline's account, and an empty home, for one page's examples."""
    token = secrets.token_urlsafe(24)
    clock = Clock()
    with start(tmp_path / "rp.sqlite3", clock=clock, rate_limit=100_000, admin_token=token) as server:
        secret = account_with_totp(Reference(server, clock), "ci@example.com")
        home, work = tmp_path / "home", tmp_path / "work"
        home.mkdir()
        work.mkdir()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("KEYCTL_VIRTUAL_KEY", "KEYCTL_TOTP_KEY"))
            },
            "HOME": str(home),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "COLUMNS": "100",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "SERVER": server.url,
            "ADMIN_TOKEN": token,
            "CI_USER": "ci@example.com",
            "CI_PASSWORD": PASSWORD,
            "CI_TOTP_SECRET": secret,
            "TOTP_SECRET": "JBSWY3DPEHPK3PXP",  # a secret of a service, for the README's TOTP example
        }
        yield World(env, home, work)


def _pages_with_examples() -> list[Path]:
    return [page for page in examples.pages() if examples.blocks(page)[0]]


def test_every_shell_block_is_marked() -> None:
    unmarked, bad = [], []
    for page in examples.pages():
        _, page_unmarked, page_bad = examples.blocks(page)
        unmarked += page_unmarked
        bad += page_bad
    assert unmarked == [], "shell blocks without <!-- example --> or <!-- not-run: WHY -->"
    assert bad == []


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_of_a_page_run(page: Path, world: World, docs_fact: list[str]) -> None:
    found, _, _ = examples.blocks(page)
    normalize = examples.Normalizer(world.home, world.work)
    env_file = world.home / ".example-env"
    text = page.read_text(encoding="utf-8")
    rewritten = text
    stale: list[str] = []
    for example in found:
        result = examples.run(example, world.env, world.work, env_file, normalize)
        expected = int(example.options.get("exit", "0"))
        assert result.exit_code == expected, (
            f"{example.where}: exit {result.exit_code}, expected {expected}\n"
            + "".join(result.outputs)[-3000:]
        )
        if example.lang == "console":
            body = examples.console_body(example, result)
            if body != example.body:
                stale.append(example.where)
                rewritten = rewritten.replace(example.body, body, 1)
            if "svg" in example.options:
                pictures.check_terminal(example.options["svg"], body, RERUN)
    RUN[str(page.relative_to(ROOT))] = len(found)
    summary = (
        f"docs examples: {sum(RUN.values())} run from {len(RUN)} pages, their exit codes and output checked"
    )
    docs_fact[:] = [fact for fact in docs_fact if not fact.startswith("docs examples:")] + [summary]
    if WRITE and stale:
        page.write_text(rewritten, encoding="utf-8")
        return
    assert stale == [], f"the output shown differs from this run: KEYCTL_WRITE_DOCS=1 {RERUN}"
