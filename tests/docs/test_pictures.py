"""The docs' pictures are current and shown: the layer diagram (from tests/test_layering.py's table), the
terminal pictures (checked where tests/docs/test_examples.py runs their examples) and the screenshots
(checked where the browser tests take them: tests/docs/pictures.py)."""

from __future__ import annotations

import re

from tests.docs import pictures
from tests.docs.generated import DOCS, ROOT

RERUN = "pytest tests/docs/test_pictures.py"


def test_the_layer_diagram_is_the_layer_table() -> None:
    pictures.check_layers(RERUN)


def test_every_picture_is_shown_and_every_screenshot_has_its_facts() -> None:
    shown = {
        (page.parent / target).resolve()
        for page in [ROOT / "README.md", *DOCS.rglob("*.md")]
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text(encoding="utf-8"))
    }
    pictures_in_docs = {
        *pictures.SCREENSHOTS.glob("*.png"),
        *pictures.TERMINAL.glob("*.svg"),
        pictures.LAYERS_SVG,
    }
    assert {p.resolve() for p in pictures_in_docs} - shown == set(), "pictures no page shows"
    missing = [p.name for p in pictures.SCREENSHOTS.glob("*.png") if not p.with_suffix(".json").exists()]
    assert missing == [], "screenshots without facts: rerun their browser tests with KEYCTL_WRITE_DOCS=1"
