"""MkDocs hooks (mkdocs.yml ``hooks``): the changelog page shows CHANGELOG.md from the repository root,
the one copy, with its links into docs/ made relative to the site."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "changelog.md":
        return markdown
    changelog = Path(config["config_file_path"]).parent / "CHANGELOG.md"
    return changelog.read_text(encoding="utf-8").replace("](docs/", "](")
