"""keyctl audit server against the running reference server, populated over its real HTTP API."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from keyctl.audit import mds
from keyctl.errors import ExitCode
from keyctl.server import ServerHandle, start
from tests.server.conftest import FakeClock, client, create_user, enroll, register
from tests.server.softauth import BE, BS, UP, UV, SoftAuthenticator

from .mds_factory import OLD_FIRMWARE_KEY, REVOKED_KEY, UV_BYPASS_KEY, YUBIKEY_5, Pki, sign_blob

DAY = 86400.0
UNKNOWN_MODEL = "0badc0de-0000-4000-8000-000000000001"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "audit-report.json").read_text())


def _login(server: ServerHandle, key: SoftAuthenticator, email: str, counter: int) -> httpx.Response:
    http = client(server)
    options = http.post("/api/passkeys/login/options", json={"email": email}).json()
    flags = UP | UV | ((BE | BS) if key.backup else 0)  # a synced passkey keeps its backup flags
    return http.post("/api/passkeys/login/verify", json=key.get(options, counter=counter, flags=flags))


@pytest.fixture(scope="module")
def populated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """Seven users: healthy, no passkey, revoked model, cloned counter + synced, stale, unknown model, and
    one at the 5-passkey limit with keys of four models. The audit only reads, so the tests of this
    module share one server."""
    clock = FakeClock()
    clock.now -= 120 * DAY  # the stale passkey is registered 120 days ago
    with start(tmp_path_factory.mktemp("rp") / "rp.sqlite3", clock=clock, rate_limit=100_000) as server:
        origin = server.url
        erin = enroll(server, clock, "erin@example.com")
        register(erin.http, SoftAuthenticator(origin, uuid.UUID(YUBIKEY_5).bytes))
        clock.advance(120 * DAY)
        alice = enroll(server, clock, "alice@example.com")
        register(alice.http, SoftAuthenticator(origin, uuid.UUID(YUBIKEY_5).bytes))
        create_user(server, "bob@example.com")
        carol = enroll(server, clock, "carol@example.com")
        register(carol.http, SoftAuthenticator(origin, uuid.UUID(REVOKED_KEY).bytes))
        dave = enroll(server, clock, "dave@example.com")
        dave_key = SoftAuthenticator(origin, uuid.UUID(YUBIKEY_5).bytes, backup=True)
        register(dave.http, dave_key)
        assert _login(server, dave_key, "dave@example.com", counter=9).status_code == 200
        assert _login(server, dave_key, "dave@example.com", counter=3).status_code == 400  # a clone
        frank = enroll(server, clock, "frank@example.com")
        register(frank.http, SoftAuthenticator(origin, uuid.UUID(UNKNOWN_MODEL).bytes))
        grace = enroll(server, clock, "grace@example.com")
        for model in (YUBIKEY_5, YUBIKEY_5, OLD_FIRMWARE_KEY, UV_BYPASS_KEY, UNKNOWN_MODEL):
            answer = register(grace.http, SoftAuthenticator(origin, uuid.UUID(model).bytes))
            assert answer.status_code == 200, answer.text
        yield server


@pytest.fixture
def populated(populated_server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> ServerHandle:
    monkeypatch.setenv("ADMIN_TOKEN", populated_server.admin_token)
    return populated_server


@pytest.fixture
def metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = Pki()
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root_pem())
    monkeypatch.setenv(mds.ENV_MDS_ROOT, str(root))
    blob = tmp_path / "blob.jwt"
    blob.write_bytes(sign_blob(pki))
    mds.update(str(blob))


def _audit(cli: Any, server: ServerHandle, *args: str) -> Any:
    return cli("audit", "server", "--server", server.url, "--admin-token-env", "ADMIN_TOKEN", *args)


def _report(result: Any) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    return report


def test_findings_for_every_kind_of_user(cli: Any, populated: ServerHandle, metadata: None) -> None:
    result = _audit(cli, populated, "--json", "--stale-days", "90")
    assert result.exit_code == ExitCode.AUDIT_FINDINGS  # a revoked model is critical, above the default high
    report = _report(result)
    assert report["summary"]["users"] == 7
    assert report["summary"]["passkeys"] == 10
    found = {(f["code"], f["subject"].split(" / ")[0]) for f in report["findings"]}
    assert found == {
        ("user.no_passkey", "bob@example.com"),
        ("model.revoked", "carol@example.com"),
        ("model.attestation_key_compromise", "carol@example.com"),
        ("passkey.counter_anomaly", "dave@example.com"),
        ("passkey.stale", "erin@example.com"),
        ("model.unknown", "frank@example.com"),
        ("user.passkey_limit", "grace@example.com"),
        ("model.user_verification_bypass", "grace@example.com"),
        ("model.unknown", "grace@example.com"),
    }
    assert report["findings"][0]["severity"] == "critical"
    assert "at or above high" in result.stderr


def test_every_passkey_is_listed_with_its_model(cli: Any, populated: ServerHandle, metadata: None) -> None:
    report = _report(_audit(cli, populated, "--json", "--fail-on", "critical"))
    by_user: dict[str, list[dict[str, Any]]] = {}
    for row in report["passkeys"]:
        by_user.setdefault(row["user"], []).append(row)
    assert sorted(by_user) == [
        f"{n}@example.com" for n in ("alice", "carol", "dave", "erin", "frank", "grace")
    ]
    (dave,) = by_user["dave@example.com"]
    assert (dave["model"], dave["backup_eligible"], dave["backed_up"]) == ("YubiKey 5 Series", True, True)
    assert (dave["sign_count"], dave["counter_anomalies"]) == (9, 1)  # the clone's 3 was refused
    assert dave["last_used"] is not None
    (erin,) = by_user["erin@example.com"]
    assert erin["last_used"] is None
    assert erin["created"] < dave["created"]
    assert (erin["backup_eligible"], erin["backed_up"]) == (False, False)
    assert by_user["frank@example.com"][0]["model"] is None
    # Every passkey here came with "none" attestation (tests/server/softauth.py).
    assert {row["attestation_format"] for row in report["passkeys"]} == {"none"}
    models = {(m["model"], m["passkeys"]) for m in report["models"]}
    assert models == {
        ("YubiKey 5 Series", 5),
        ("Cloned Key Inc. Token", 1),
        ("Patchable Key", 1),
        ("Bypassable Key", 1),
        (None, 2),
    }
    assert report["models"][0]["model"] == "YubiKey 5 Series"  # most used first
    assert {m["status"] for m in report["models"] if m["model"] == "Cloned Key Inc. Token"} == {"REVOKED"}


def test_the_table_is_grouped_by_severity(cli: Any, populated: ServerHandle, metadata: None) -> None:
    out = _audit(cli, populated).stdout
    headings = ["models", "CRITICAL (2)", "HIGH (2)", "MEDIUM (1)", "LOW (3)", "INFO (1)"]
    positions = [out.index(h) for h in headings]
    assert positions == sorted(positions), out
    assert "Bypassable Key" in out


def test_a_long_group_is_cut_on_the_terminal_only(
    cli: Any, populated: ServerHandle, metadata: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyctl.cli import audit as audit_cli

    monkeypatch.setattr(audit_cli, "TERMINAL_ROWS", 1)
    result = _audit(cli, populated)
    assert "LOW (3, the first 1 shown)" in result.stdout
    assert "--csv, --json or --html FILE list them all" in result.stderr
    assert "bob@example.com" in result.stdout  # the first LOW finding by subject
    assert "frank@example.com" not in result.stdout  # his only finding is the second LOW one
    assert "frank@example.com" in _audit(cli, populated, "--csv").stdout


def test_fail_on_threshold_and_policy(
    cli: Any, populated: ServerHandle, metadata: None, tmp_path: Path
) -> None:
    assert _audit(cli, populated, "--json", "--fail-on", "critical").exit_code == ExitCode.AUDIT_FINDINGS
    policy = tmp_path / "policy.toml"
    policy.write_text(f'device_bound_only = true\nallowed_aaguids = ["{YUBIKEY_5}"]\n')
    result = _audit(cli, populated, "--json", "--policy", str(policy))
    codes = {(f["code"], f["subject"].split(" / ")[0]) for f in _report(result)["findings"]}
    assert ("policy.synced_passkey", "dave@example.com") in codes
    assert ("policy.model_not_allowed", "frank@example.com") in codes
    assert ("policy.model_not_allowed", "alice@example.com") not in codes
    assert not any(code == "policy.certification" for code, _ in codes)
    levels = tmp_path / "levels.toml"
    levels.write_text('min_certification = "FIDO_CERTIFIED_L2"\n')
    graded = _report(_audit(cli, populated, "--json", "--policy", str(levels)))["findings"]
    below = {f["subject"] for f in graded if f["code"] == "policy.certification"}
    assert {s.split(" / ")[0] for s in below} == {
        "carol@example.com",
        "frank@example.com",
        "grace@example.com",
    }
    assert not any(s.startswith(("alice@", "dave@")) for s in below)  # YubiKey 5 is L2


def test_csv_and_html_outputs(cli: Any, populated: ServerHandle, metadata: None, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    result = _audit(cli, populated, "--csv", "--html", str(html), "--fail-on", "critical")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["subject"].split(" / ")[0] for r in rows} >= {"bob@example.com", "carol@example.com"}
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "carol@example.com" in page
    assert "<h2>models (5)</h2>" in page
    assert "<h2>passkeys (10)</h2>" in page  # the whole inventory travels with the mailed report
    assert "<td>Cloned Key Inc. Token</td>" in page
    assert not any(marker in page for marker in ("src=", "href=", "@import", "url("))


def test_pages_through_the_admin_api(
    cli: Any, populated: ServerHandle, metadata: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyctl import admin

    pages: list[int] = []
    call = admin.AdminApi._call

    def counting(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        page = call(self, method, path, *args, **kwargs)
        if path.endswith("/users"):
            pages.append(len(page["users"]))
        return page

    monkeypatch.setattr(admin, "PAGE_SIZE", 2)
    monkeypatch.setattr(admin.AdminApi, "_call", counting)
    report = _report(_audit(cli, populated, "--json"))
    assert report["summary"]["users"] == 7
    assert pages == [2, 2, 2, 1]  # the server honoured the page size and handed out cursors


def test_wrong_token_and_unreachable_server(
    cli: Any, populated: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "not-the-token")
    refused = _audit(cli, populated)
    assert refused.exit_code == ExitCode.SIGN_IN_FAILED
    assert "not-the-token" not in refused.stderr
    down = cli("audit", "server", "--server", "http://127.0.0.1:9", "--admin-token-env", "ADMIN_TOKEN")
    assert down.exit_code == ExitCode.SERVER_UNAVAILABLE
    # Output options are checked before the server is asked anything.
    for bad in (["--fail-on", "severe"], ["--json", "--csv"]):
        refused = cli(
            "audit", "server", "--server", "http://127.0.0.1:9", "--admin-token-env", "ADMIN_TOKEN", *bad
        )
        assert refused.exit_code == ExitCode.INVALID_INPUT, refused.stderr


def test_admin_endpoints_come_from_the_profile(cli: Any, populated: ServerHandle, tmp_path: Path) -> None:
    from importlib import resources

    builtin = (resources.files("keyctl.webauthn") / "profiles" / "keyctl.toml").read_text()
    assert "[admin]" in builtin
    no_admin = tmp_path / "no-admin.toml"
    no_admin.write_text(builtin.split("\n[admin]")[0].rsplit("\n#", 2)[0] + "\n")
    refused = _audit(cli, populated, "--profile", str(no_admin))
    assert refused.exit_code == ExitCode.INVALID_INPUT
    assert "does not say where the admin API" in refused.stderr
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(builtin.replace('users = "/api/admin/users"', 'users = "/api/admin/people"'))
    moved = _audit(cli, populated, "--profile", str(elsewhere))
    assert moved.exit_code == ExitCode.SERVER_UNAVAILABLE
    assert "/api/admin/people answered HTTP 404" in moved.stderr
