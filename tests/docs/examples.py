"""The shell examples of the docs (docs/*.md and the README), found by their marks and run.

Every ``sh``, ``bash`` or ``console`` code block carries a mark in an HTML comment on the line before it:

- ``<!-- example -->``: the block runs, in page order, in one throwaway world per page (below); it must
  exit 0, or the status ``exit=N`` names (``<!-- example exit=9 -->``: the last command's).
- A ``console`` block's lines starting with ``$ `` are the commands (a line ending in ``\\`` continues on
  the next); every other line is output, written by the run: the test fails when the page shows anything
  else. ``svg=NAME`` also renders the block as a terminal picture, docs/terminal/NAME.svg.
- ``<!-- not-run: WHY -->``: a synopsis, what needs hardware, root or another machine, what runs until
  stopped or for hours, what installs keyctl, or what another test runs (``tested by PATH``).

The world (``world_env``): a reference server on loopback (``$SERVER``), its admin token in
``$ADMIN_TOKEN``, an account ``$CI_USER`` whose password is in ``$CI_PASSWORD`` and whose TOTP secret,
enrolled earlier, is in ``$CI_TOTP_SECRET``; another service's TOTP secret in ``$TOTP_SECRET``; an
empty home, data, config and cache directory and keyring
service; the working directory empty. Values that differ in every run are shown normalized: the
server's port as 8765 (its default), long ids as ``<id>``, times as ``YYYY-MM-DD hh:mm``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.generated import DOCS, ROOT

FENCE = re.compile(r"^```(sh|bash|console)\n(.*?)^```\n", re.M | re.S)
MARK = re.compile(r"<!-- (example(?: [^>]*)?|not-run: [^>]+) -->\n$")
NOT_RUN_REASONS = (
    "synopsis",
    "hardware",
    "root",
    "another machine",
    "runs until stopped",
    "takes hours",
    "installs",
    "tested by ",
)
SEPARATOR = "\x1e"


@dataclass(frozen=True)
class Example:
    path: Path
    line: int  # of the fence
    lang: str
    body: str
    start: int  # offsets of the body in the page
    end: int
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[str]:
        """The block's commands: a console block's ``$`` lines, an sh block's lines; continuations joined."""
        commands: list[str] = []
        pending: list[str] = []
        for line in self.body.splitlines():
            if not pending:
                if self.lang == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                elif not line.strip() or line.lstrip().startswith("#"):
                    continue
            pending.append(line)
            if not line.endswith("\\"):
                commands.append("\n".join(pending))
                pending = []
        assert not pending, f"{self.where}: a command ends in a continuation"
        return commands


@dataclass(frozen=True)
class Unmarked:
    where: str


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(path: Path) -> tuple[list[Example], list[str], list[str]]:
    """The examples of a page, in order, and the places of blocks without a mark or with an unknown one."""
    text = path.read_text(encoding="utf-8")
    examples: list[Example] = []
    unmarked: list[str] = []
    bad: list[str] = []
    for fence in FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        where = f"{path.relative_to(ROOT)}:{line}"
        before = text[: fence.start()]
        mark = MARK.search(before[before.rfind("\n", 0, len(before) - 1) + 1 :])
        if mark is None:
            unmarked.append(where)
            continue
        words = mark.group(1)
        if words.startswith("not-run: "):
            why = words.removeprefix("not-run: ")
            if not why.startswith(NOT_RUN_REASONS):
                bad.append(f"{where}: not-run needs one of {NOT_RUN_REASONS}")
            elif why.startswith("tested by ") and not (ROOT / why.split()[2]).exists():
                bad.append(f"{where}: {why.split()[2]} does not exist")
            continue
        options = dict(word.partition("=")[::2] for word in words.split()[1:])
        if set(options) - {"exit", "svg"}:
            bad.append(f"{where}: unknown option in {words!r}")
        examples.append(
            Example(path, line, fence.group(1), fence.group(2), fence.start(2), fence.end(2), options)
        )
    return examples, unmarked, bad


def script(example: Example, env_file: Path) -> str:
    """A bash script that runs the example's commands in order, each announced on the output by a
    separator line, and keeps what they exported for the page's next example."""
    for command in example.commands():
        assert "<<" not in command, f"{example.where}: no here-documents (the runner splits on lines)"
    lines = [
        "set -eo pipefail",
        f'[ -f "{env_file}" ] && source "{env_file}"',
        f"trap 'export -p > \"{env_file}\"' EXIT",
    ]
    for index, command in enumerate(example.commands()):
        lines += [f"printf '{SEPARATOR}{index}\\n'", command]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Run:
    exit_code: int
    outputs: list[str]  # one per command, normalized


def run(example: Example, env: dict[str, str], cwd: Path, env_file: Path, normalize: Normalizer) -> Run:
    proc = subprocess.run(
        ["bash", "-c", script(example, env_file)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    parts = re.split(rf"^{SEPARATOR}\d+\n", proc.stdout, flags=re.M)
    assert parts[0] == "", f"{example.where}: output before the first command: {parts[0]!r}"
    return Run(proc.returncode, [normalize(part) for part in parts[1:]])


class Normalizer:
    """What differs in every run, made stable: the world's paths, ports, long ids and times."""

    def __init__(self, home: Path, work: Path) -> None:
        self.paths = [(str(work) + "/", ""), (str(work), "."), (str(home), "~")]

    def __call__(self, text: str) -> str:
        for path, shown in self.paths:
            text = text.replace(path, shown)
        return stable(text)


def stable(text: str) -> str:
    """Ports, times and long ids, which differ in every run, in one shape."""
    text = re.sub(r"\b(localhost|127\.0\.0\.1):\d{2,5}\b", r"\1:8765", text)
    # times: the same shape, so that the columns of a table stay aligned
    text = re.sub(r"\b\d{4}-\d\d-\d\d([T ])\d\d:\d\d(:\d\d(?:\.\d+)?)?", _time_mask, text)
    text = re.sub(r"\b[0-9a-f]{32,}\b", "<id>", text)
    text = re.sub(r"\b[0-9a-f]{11}…", "xxxxxxxxxxx…", text)  # an id cut to 12 characters
    # base64url ids (credential ids, tokens): long, with lower and upper case letters
    text = re.sub(r"(?<![\w-])(?=[\w-]*[a-z])(?=[\w-]*[A-Z])[\w-]{22,}(?![\w-])", "<id>", text)
    return text


def _time_mask(match: re.Match[str]) -> str:
    """2026-12-02 11:41 -> YYYY-MM-DD hh:mm (seconds and fractions as ss and f)."""
    seconds = match.group(2) or ""
    masked_seconds = ":ss" + "." + "f" * (len(seconds) - 4) if "." in seconds else (":ss" if seconds else "")
    return f"YYYY-MM-DD{match.group(1)}hh:mm{masked_seconds}"


def console_body(example: Example, result: Run) -> str:
    """The console block as the run writes it: each command after ``$ ``, then its output."""
    lines: list[str] = []
    for command, output in zip(example.commands(), result.outputs, strict=True):
        lines.append("$ " + command)
        lines += output.rstrip("\n").splitlines()
    return "\n".join(lines) + "\n"
