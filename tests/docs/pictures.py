"""The pictures of the docs, each made from a real run or from the code, each checked by a test:

- terminal pictures (docs/terminal/NAME.svg) of the main journeys: the console examples marked
  ``svg=NAME``, as the example runner ran them, drawn by Rich (``Console(record=True).export_svg``);
- screenshots of the reference server's page (docs/screenshots/NAME.png), taken by the browser tests
  through ``screenshot``: Chromium's pixels differ between versions, so what is checked is what is
  deterministic, the page's visible text and the viewport width (docs/screenshots/NAME.json);
- the diagram of the layers (docs/architecture-layers.svg), from ``tests/test_layering.py``'s table of
  layers, which that test enforces.

``KEYCTL_WRITE_DOCS=1`` makes each check write its picture instead; ``bash scripts/docs-pictures.sh``
runs every test that makes one.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
from typing import Any

from rich.console import Console
from rich.text import Text

from tests.docs.examples import stable
from tests.docs.generated import DOCS, ROOT, WRITE

TERMINAL = DOCS / "terminal"
SCREENSHOTS = DOCS / "screenshots"
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
LAYERS_SVG = DOCS / "architecture-layers.svg"
WIDTH = 100


def terminal_svg(name: str, body: str) -> str:
    """A console example drawn as a terminal: commands bold after a green prompt, output as printed. The
    text is also the SVG's description, which is what the check compares."""
    console = Console(
        record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    for line in body.splitlines():
        if line.startswith("$ "):
            console.print(
                Text.assemble(("$ ", "bold green"), (line[2:], "bold")), highlight=False, soft_wrap=True
            )
        else:
            console.print(Text(line), highlight=False)
    svg = console.export_svg(title=f"keyctl: {name}")
    desc = f"<desc>{html.escape(body)}</desc>"
    return svg.replace(">", ">\n    " + desc, 1)


def _svg_desc(svg: str) -> str:
    found = re.search(r"<desc>(.*?)</desc>", svg, re.S)
    return html.unescape(found.group(1)) if found else ""


def check_terminal(name: str, body: str, rerun: str) -> None:
    path = TERMINAL / f"{name}.svg"
    if WRITE:
        TERMINAL.mkdir(exist_ok=True)
        path.write_text(terminal_svg(name, body), encoding="utf-8")
        return
    assert path.exists(), f"docs/terminal/{name}.svg is missing: KEYCTL_WRITE_DOCS=1 {rerun}"
    assert _svg_desc(path.read_text(encoding="utf-8")) == body, (
        f"docs/terminal/{name}.svg shows another run: KEYCTL_WRITE_DOCS=1 {rerun}"
    )


# Screenshots of the server's page


def _page_facts(page: Any) -> dict[str, Any]:
    """What a screenshot shows that does not depend on Chromium's rendering: the visible text, the width."""
    text = page.evaluate("document.body.innerText")
    text = stable(re.sub(r"\b[A-Z2-7]{16,}\b", "<secret>", text))  # a TOTP secret drawn for this run
    text = re.sub(r"\b\d{1,2}:\d\d(?::\d\d)?(?: ?[AP]M)?\b", "hh:mm", text)  # the time of day the test ran
    text = re.sub(r"\b[A-Z0-9]{4}(?:-[A-Z0-9]{4}){3}\b", "<recovery code>", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return {"width": page.viewport_size["width"], "text": lines}


def screenshot(page: Any, name: str) -> None:
    """A Playwright page's screenshot as a test artifact (test-artifacts/screenshots/NAME.png); when the
    docs show it (docs/screenshots/NAME.png), its visible text must be what they were made from."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    taken = ARTIFACTS / f"{name}.png"
    page.screenshot(path=taken, full_page=True)
    shown = SCREENSHOTS / f"{name}.png"
    facts_path = shown.with_suffix(".json")
    if not shown.exists():
        return
    facts = _page_facts(page)
    if WRITE:
        shutil.copyfile(taken, shown)
        facts_path.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    assert facts_path.exists(), (
        f"docs/screenshots/{name}.json is missing: rerun this test with KEYCTL_WRITE_DOCS=1"
    )
    assert json.loads(facts_path.read_text(encoding="utf-8")) == facts, (
        f"docs/screenshots/{name}.png shows another page: rerun this test with KEYCTL_WRITE_DOCS=1"
    )


# The layer diagram

BOX_H, ROW_GAP, MARGIN, LABEL_W, BOX_GAP, CHAR_W = 34, 30, 16, 250, 10, 8.4


def layers_svg() -> str:
    """The layer table as horizontal bands, top to bottom, a box per module; arrows between the bands say
    imports go down. Only the table is drawn (not the imports themselves), so that a new import does not
    change the picture: test_layering fails on one that goes up."""
    from tests.test_layering import LAYERS

    rows: list[list[tuple[str, float, float]]] = []
    width = 0.0
    for _, modules in LAYERS:
        x = MARGIN + LABEL_W
        row = []
        for module in modules:
            if module == "__init__":
                continue
            w = max(len(module), 6) * CHAR_W + 24
            row.append((module, x, w))
            x += w + BOX_GAP
        rows.append(row)
        width = max(width, x + MARGIN)
    height = MARGIN * 2 + len(LAYERS) * (BOX_H + ROW_GAP) - ROW_GAP + 44
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
        f'viewBox="0 0 {width:.0f} {height}" font-family="monospace" font-size="14">',
        "<title>keyctl's layers: a module imports its own layer or the layers below</title>",
        '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="5" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z" fill="#555"/></marker></defs>',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height}" fill="white"/>',
    ]
    for index, ((label, _), row) in enumerate(zip(LAYERS, rows, strict=True)):
        y = MARGIN + index * (BOX_H + ROW_GAP)
        out.append(
            f'<text x="{MARGIN}" y="{y + BOX_H / 2 + 5}" fill="#333" font-family="sans-serif">'
            f"{html.escape(label)}</text>"
        )
        for module, x, w in row:
            fill = "#e8f0fe" if index < len(LAYERS) - 1 else "#f1f3f4"
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BOX_H}" rx="6" fill="{fill}" '
                f'stroke="#4a6fa5"/>'
            )
            out.append(
                f'<text x="{x + w / 2:.1f}" y="{y + BOX_H / 2 + 5}" text-anchor="middle">{module}</text>'
            )
        if index < len(LAYERS) - 1:
            ax = MARGIN + LABEL_W - 20
            out.append(
                f'<line x1="{ax}" y1="{y + BOX_H + 2}" x2="{ax}" y2="{y + BOX_H + ROW_GAP - 4}" '
                f'stroke="#555" marker-end="url(#arrow)"/>'
            )
    notes = (
        "Generated from LAYERS in tests/test_layering.py, which fails on an import that goes up a layer.",
        "Also enforced there: only cli imports typer and rich; server imports nothing of webauthn, hid "
        "or authenticator.",
    )
    for index, note in enumerate(notes):
        out.append(
            f'<text x="{MARGIN}" y="{height - MARGIN - 18 * (len(notes) - 1 - index)}" fill="#555" '
            f'font-family="sans-serif" font-size="12">{html.escape(note)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def check_layers(rerun: str) -> None:
    svg = layers_svg()
    if WRITE:
        LAYERS_SVG.write_text(svg, encoding="utf-8")
        return
    assert LAYERS_SVG.exists(), f"docs/architecture-layers.svg is missing: KEYCTL_WRITE_DOCS=1 {rerun}"
    assert LAYERS_SVG.read_text(encoding="utf-8") == svg, (
        f"docs/architecture-layers.svg is stale: KEYCTL_WRITE_DOCS=1 {rerun}"
    )
