"""`keyctl virtual attach` against a real Linux kernel: one QEMU guest boot runs tests/vm/guest_uhid.py.

This host's kernel has no /dev/uhid, so the checks run in a throwaway guest (tests/vm/qemu.py) and each
guest test is reported here under its own name. Skipped, loudly, only where QEMU cannot run at all.
"""

from __future__ import annotations

import ast
import compileall
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.vm import qemu

ROOT = Path(__file__).resolve().parents[2]
GUEST_TESTS = Path(__file__).with_name("guest_uhid.py")
NAMES = [
    node.name
    for node in ast.parse(GUEST_TESTS.read_text()).body
    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
]
GUEST_TIMEOUT_S = 900


@dataclass(frozen=True)
class Outcome:
    kind: str  # passed, failed, error, skipped
    text: str
    seconds: float


def _outcomes(junit: Path) -> dict[str, Outcome]:
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        found = [child for child in case if child.tag in ("failure", "error", "skipped")]
        seconds = float(case.attrib.get("time", 0))
        if not found:
            outcomes[case.attrib["name"]] = Outcome("passed", "", seconds)
            continue
        child = found[0]
        text = f"{child.attrib.get('message', '')}\n{child.text or ''}"
        outcomes[case.attrib["name"]] = Outcome(
            {"failure": "failed"}.get(child.tag, child.tag), text, seconds
        )
    return outcomes


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    reason = qemu.unavailable_reason()
    if reason:
        message = f"QEMU GUEST NOT RUN, virtual attach untested against a kernel: {reason}"
        sys.stderr.write(f"\n*** {message} ***\n")
        pytest.skip(message)
    for hidden in ("/tmp", "/run"):  # the guest mounts its own tmpfs there
        assert not str(ROOT).startswith(hidden + "/"), f"the guest cannot see a checkout under {hidden}"
    # The guest sees the tree read-only: compiled bytecode saves every guest process seconds.
    compileall.compile_dir(ROOT / "src", quiet=1)
    compileall.compile_dir(ROOT / "tests", quiet=1)
    shared = tmp_path_factory.mktemp("vm")
    script = (
        f"cd {ROOT}\n"
        f"export PATH={Path(sys.executable).parent}:$PATH\n"
        f"{sys.executable} -m pytest -p no:cacheprovider --noconftest -o addopts= -q -rfEs "
        f"--junitxml=/tmp/vm/junit.xml {GUEST_TESTS.relative_to(ROOT)}\n"
    )
    result = qemu.run_guest(script, shared, timeout_s=GUEST_TIMEOUT_S)
    junit = shared / "junit.xml"
    assert junit.exists(), f"the guest wrote no results (exit {result.exit_code}):\n{result.output[-4000:]}"
    outcomes = _outcomes(junit)
    times = ", ".join(f"{name.removeprefix('test_')[:40]} {o.seconds:.0f} s" for name, o in outcomes.items())
    sys.stderr.write(
        f"\nQEMU guest: {len(NAMES)} checks in {result.seconds:.0f} s, boot included ({times})\n"
    )
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_in_guest(name: str, guest: dict[str, Outcome]) -> None:
    outcome = guest.get(name)
    assert outcome is not None, f"{name} did not run in the guest"
    if outcome.kind == "skipped":
        pytest.fail(f"{name} was skipped in the guest: {outcome.text}")  # nothing there may skip
    assert outcome.kind == "passed", outcome.text
