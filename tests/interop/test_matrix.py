"""keyctl against relying parties on four server libraries, each with its own defaults (issue #13 items
2 and 3); the interop tables in docs/interop.md are this run's results (``test_docs_tables``)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from keyctl.errors import CredentialExcluded, NotSupported, VerificationFailed
from tests.docs.generated import check_block
from tests.interop import matrix
from tests.interop.conftest import LIBRARIES, RelyingParty

TABLES = {"ceremonies": matrix.CEREMONIES, "variants": matrix.VARIANTS, "output": matrix.OUTPUT}

# What a library does by default that keyctl cannot change, pinned so that a fixed library turns a test red.
OPENSSL3 = (
    "OpenSSL::PKey::PKeyError: pkeys are immutable on OpenSSL 3.0"  # Debian's ruby-cose 1.2 on OpenSSL 3
)
DEFECTS = {
    ("ruby", "login (username first)"): OPENSSL3,
    ("ruby", "login (username-less)"): OPENSSL3,
    ("ruby", "tampered signature"): "n/a (no login verifies)",
    ("ruby", "replayed assertion"): "n/a (no login verifies)",
    ("ruby", "wrong origin"): "n/a (no login verifies)",
    ("ruby", "attestation self"): OPENSSL3,
    ("ruby", "attestation x5c"): "AttestationStatementVerificationError",  # no trusted root for the key's CA
    ("ruby", "counter"): OPENSSL3,
    ("ruby", "BE/BS flags"): OPENSSL3,
    # Fido2Server's default origin check compares the host with the rpId, not the port
    ("fido2", "wrong origin"): "ACCEPTED",
}


@pytest.fixture(scope="session")
def outcomes(relying_parties: dict[str, RelyingParty]) -> Any:
    @cache
    def of(library: str, table: str) -> dict[str, matrix.Cell]:
        run = matrix.Run(relying_parties[library])
        return {"ceremonies": matrix.ceremonies, "variants": matrix.variants, "output": matrix.output}[table](
            run
        )

    return of


def _expected_defects(library: str, cells: dict[str, matrix.Cell]) -> set[str]:
    pinned = {name for (lib, name) in DEFECTS if lib == library and name in cells}
    for name in pinned:
        assert DEFECTS[library, name] in cells[name].text, (name, cells[name].text)
    return pinned


@pytest.mark.parametrize("library", LIBRARIES)
def test_ceremonies(library: str, outcomes: Any) -> None:
    cells = outcomes(library, "ceremonies")
    pinned = _expected_defects(library, cells)
    for name in matrix.CEREMONIES[:4]:
        if name not in pinned:
            assert cells[name].outcome == "ok", (name, cells[name].text)
    assert cells["register (resident key + UV)"].detail["userVerified"] is True
    if "login (username first)" not in pinned:
        assert (
            cells["login (username first)"].detail["username"]
            == cells["register (defaults)"].detail["username"]
        )
        bob = cells["register (resident key + UV)"].detail["username"]
        assert cells["login (username-less)"].detail["username"] == bob
    for name in ("tampered signature", "replayed assertion", "wrong origin"):
        if name in pinned:
            continue
        cell = cells[name]
        assert cell.outcome == "refused", (name, cell.text)
        error = cell.detail["error"]
        assert isinstance(error, VerificationFailed), (name, error.message)
        assert "server answered 400" in error.message, error.message  # the library's own reason follows


@pytest.mark.parametrize("library", LIBRARIES)
def test_option_variants(library: str, outcomes: Any) -> None:
    cells = outcomes(library, "variants")
    for name in (
        "attestation direct",
        "attestation enterprise",
        "hints",
        "credProps",
        "prf",
        "largeBlob",
        "credProtect",
    ):
        assert cells[name].outcome in ("ok", "n/a"), (name, cells[name].text)
    excluded = cells["excludeCredentials"].detail.get("error")
    assert isinstance(excluded, CredentialExcluded), cells["excludeCredentials"].text
    rsa = cells["RS256 only"].detail.get("error")
    assert isinstance(rsa, NotSupported), cells["RS256 only"].text
    assert "none of the key types the server accepts (RS256)" in rsa.message, rsa.message
    assert cells["largeBlob required"].outcome in ("ok", "n/a"), cells["largeBlob required"].text


@pytest.mark.parametrize("library", LIBRARIES)
def test_the_libraries_verify_what_the_virtual_authenticator_makes(library: str, outcomes: Any) -> None:
    cells = outcomes(library, "output")
    pinned = _expected_defects(library, cells)
    if library == "fido2":  # Fido2Server's default: attestation statements are not checked
        expected = {
            "attestation none": "ok (none, not checked)",
            "attestation self": "ok (packed, not checked)",
        }
        expected["attestation x5c"] = "ok (packed, not checked)"
        pinned |= set(expected)
        assert {name: cells[name].text for name in expected} == expected
    expected = {
        "attestation none": "ok (none)",
        "attestation self": "ok (packed)",
        "attestation x5c": "ok (packed)",
    }
    for name, text in expected.items():
        if name not in pinned:
            assert cells[name].text == text, (name, cells[name].text)
    if "counter" not in pinned:
        counters = cells["counter"].detail["counters"]
        assert counters == sorted(set(counters)), counters
        assert cells["counter"].outcome == "ok", cells["counter"].text  # a cloned key's assertion refused
    if "BE/BS flags" not in pinned:
        assert cells["BE/BS flags"].outcome == "ok", cells["BE/BS flags"].text
        assert cells["BE/BS flags"].detail["flags"] == (False, False, False, False)  # a device-bound key
    assert cells["credProps output"].text in ("ok (rk True)", "n/a (no extensions option)")


def render(outcomes: Any, versions: dict[str, str]) -> str:
    """The interop tables of docs/interop.md, one row per library."""
    lines: list[str] = []
    for table, columns in TABLES.items():
        lines += ["| library | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for library in LIBRARIES:
            cells = outcomes(library, table)
            texts = [cells[c].text.replace("|", "/") for c in columns]
            lines.append(f"| {versions[library]} | " + " | ".join(texts) + " |")
        lines.append("")
    return "\n".join(lines)


def _stable(text: str) -> str:
    """Cell texts without the run's random user names."""
    import re

    return re.sub(r"u[0-9a-f]{8}@example\.com", "user", text)


def test_docs_tables(outcomes: Any, library_versions: dict[str, str]) -> None:
    """docs/interop.md shows this run's results; KEYCTL_WRITE_DOCS=1 writes them there."""
    table = _stable(render(outcomes, library_versions))
    check_block("interop.md", "interop-matrix", table, "pytest tests/interop/test_matrix.py")
