"""python-fido2's device test suite (``tests/device/`` of the fido2 sdist) against the virtual authenticator.

The suite is fetched from PyPI at test time (``pip download`` of the sdist of the installed fido2 version)
into a cache directory, never committed: ``$KEYCTL_TEST_CACHE`` or ``~/.cache/keyctl-tests``. It runs as
one pytest session, as it is built (its PIN set once, its own factory resets), in a subprocess with the
shim ``keyctl_suite_shim.py`` loaded, once in-process and once over CTAPHID-over-UDP. Every test must
pass or be skipped for a reason in SKIP_REASONS (a feature keyctl does not offer; a reason no skip gives
any more fails the test); the table in docs/virtual.md is this run's result (``KEYCTL_WRITE_DOCS=1``
writes it).
"""

from __future__ import annotations

import collections
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.generated import check_block
from tests.fido2_suite.keyctl_suite_shim import EP_RP_ID, TRANSPORTS

HERE = Path(__file__).parent
SUITE_TIMEOUT_S = 600
PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet")
SUITE_PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "keyctl_suite_shim", "-p", "no:cacheprovider")

# Why a test may be skipped: each is a feature keyctl's virtual authenticator does not offer.
SKIP_REASONS = {
    r"Algorithm (ES384|ES512|PS256|RS256|ES256K|MLDSA44|MLDSA65|MLDSA87) not supported": (
        "algorithms beyond ES256 and EdDSA"
    ),
    r"Persistent PUAT not supported": "persistent read-only credential management tokens (perCredMgmtRO)",
    r"previewSign not supported by authenticator": "previewSign",
}


@dataclass(frozen=True)
class Outcome:
    module: str  # e.g. test_clientpin
    name: str  # e.g. test_pin_validation[PinProtocolV1]
    result: str  # passed, skipped, failed, error
    message: str


def cache_dir() -> Path:
    return Path(os.environ.get("KEYCTL_TEST_CACHE") or Path.home() / ".cache" / "keyctl-tests")


def suite_root(version: str) -> Path:
    """The sdist's root holding ``tests/device``, downloaded from PyPI once per fido2 version."""
    root = cache_dir() / f"fido2-{version}-suite"
    if (root / "tests" / "device" / "conftest.py").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as work:
        subprocess.run(
            [*PIP_DOWNLOAD, "--dest", work, f"fido2=={version}"],
            check=True,
            timeout=300,
        )
        (sdist,) = Path(work).glob(f"fido2-{version}.tar.gz")
        prefix = f"fido2-{version}/tests/"
        unpacked = Path(work) / "unpacked"
        with tarfile.open(sdist) as archive:
            # Only the tests: the sdist's own fido2/ must not shadow the installed one on sys.path.
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            archive.extractall(unpacked, members=members, filter="data")
        # Renamed into place whole, so an interrupted download never leaves half a suite behind.
        shutil.rmtree(root, ignore_errors=True)
        (unpacked / f"fido2-{version}").rename(root)
    return root


def run_suite(transport: str, junit: Path) -> list[Outcome]:
    root = suite_root(importlib.metadata.version("fido2"))
    env = {**os.environ, "PYTHONPATH": str(HERE), "KEYCTL_SUITE_TRANSPORT": transport}
    completed = subprocess.run(
        [*SUITE_PYTEST, "--ep-rp-id", EP_RP_ID, f"--junitxml={junit}", "tests/device"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    assert junit.is_file(), completed.stdout[-3000:] + completed.stderr[-3000:]
    outcomes = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        result, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                result = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = child.get("message", "")
        outcomes.append(Outcome(module, case.get("name", ""), result, message))
    assert outcomes, completed.stdout[-3000:] + completed.stderr[-3000:]
    return outcomes


def skip_reason(message: str) -> str | None:
    text = message.removeprefix("Skipped: ")
    for pattern, reason in SKIP_REASONS.items():
        if re.fullmatch(pattern, text):
            return reason
    return None


def docs_block(outcomes: list[Outcome], version: str) -> str:
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    skipped: dict[str, set[str]] = collections.defaultdict(set)
    for outcome in outcomes:
        counts[outcome.module][outcome.result] += 1
        if outcome.result == "skipped":
            skipped[outcome.module].add(skip_reason(outcome.message) or outcome.message)
    lines = [
        f"| python-fido2 {version} `tests/device/` module | passed | skipped | why skipped |",
        "|---|---|---|---|",
    ]
    for module in sorted(counts):
        why = "; ".join(sorted(skipped[module])) or "-"
        lines.append(f"| `{module}` | {counts[module]['passed']} | {counts[module]['skipped']} | {why} |")
    total = collections.Counter(o.result for o in outcomes)
    lines.append(f"| **all** | **{total['passed']}** | **{total['skipped']}** | |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Outcome]]:
    junit_dir = tmp_path_factory.mktemp("fido2-suite")
    return {transport: run_suite(transport, junit_dir / f"{transport}.xml") for transport in TRANSPORTS}


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_suite_passes_in_one_session(results: dict[str, list[Outcome]], transport: str) -> None:
    outcomes = results[transport]
    broken = [f"{o.module}::{o.name}: {o.message}" for o in outcomes if o.result in ("failed", "error")]
    assert broken == []
    unexplained = [
        f"{o.module}::{o.name}: {o.message}"
        for o in outcomes
        if o.result == "skipped" and skip_reason(o.message) is None
    ]
    assert unexplained == []
    # a reason no skip gives any more is a feature keyctl now offers: its tests must run, never be skipped
    stale = [
        pattern
        for pattern in SKIP_REASONS
        if not any(
            o.result == "skipped" and re.fullmatch(pattern, o.message.removeprefix("Skipped: "))
            for o in outcomes
        )
    ]
    assert stale == []
    passed = {o.module for o in outcomes if o.result == "passed"}
    # the suite's core modules must have run, not been skipped away
    assert {"test_info", "test_hid", "test_clientpin", "test_config", "test_bioenroll"} <= passed
    assert {"test_credentials", "test_credman", "test_client", "test_credblob", "test_prf"} <= passed
    assert {"test_largeblobs", "test_payment"} <= passed


@pytest.mark.slow
def test_both_transports_agree_and_the_docs_show_the_run(results: dict[str, list[Outcome]]) -> None:
    def summary(outcomes: list[Outcome]) -> list[tuple[str, str, str]]:
        return sorted((o.module, o.name, o.result) for o in outcomes)

    assert summary(results["inprocess"]) == summary(results["udp"])
    block = docs_block(results["inprocess"], importlib.metadata.version("fido2"))
    check_block("virtual.md", "device-suite", block, "pytest tests/fido2_suite")
