"""Parts of the docs pages that the code or a test run writes, between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` marks: a test compares each with what the code or the run gives now and fails
when the page is stale; ``KEYCTL_WRITE_DOCS=1`` makes the same test write the page instead."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
WRITE = os.environ.get("KEYCTL_WRITE_DOCS") == "1"


def check_block(page: str, name: str, content: str, rerun: str) -> None:
    """docs/PAGE shows CONTENT between its NAME marks (written there with KEYCTL_WRITE_DOCS=1)."""
    path = DOCS / page
    text = path.read_text(encoding="utf-8")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    assert begin in text, f"docs/{page} lacks the {begin} mark"
    assert end in text, f"docs/{page} lacks the {end} mark"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    updated = f"{head}{begin}\n{content.strip()}\n{end}{tail}"
    if WRITE:
        path.write_text(updated, encoding="utf-8")
        return
    assert text == updated, f"docs/{page} ({name}) is stale: KEYCTL_WRITE_DOCS=1 {rerun}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; a | inside a cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)
