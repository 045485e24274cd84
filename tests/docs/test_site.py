"""The docs site builds with ``mkdocs build --strict``: a broken link, a missing page or anchor, or a page
left out of the nav fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.docs.generated import DOCS, ROOT


def test_mkdocs_build_strict(tmp_path: Path, docs_fact: list[str]) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    built = [p for p in pages if (site / p.removesuffix(".md") / "index.html").exists() or p == "index.md"]
    assert built == pages
    assert (site / "index.html").exists()
    docs_fact.append(f"mkdocs build --strict: {len(pages)} pages built without a warning")
