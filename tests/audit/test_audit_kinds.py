"""Each kind of virtual authenticator, registered for real through keyctl's client on the reference
server: what the server stores and its admin API shows, what `keyctl audit server` reports under a
"device-bound only" policy, and the server's own device-bound-only site policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyctl.authenticator import VirtualAuthenticator, new_state
from keyctl.authenticator.state import Kind
from keyctl.authenticator.sync import clone
from keyctl.errors import ExitCode, VerificationFailed
from keyctl.hid.inprocess import connect
from keyctl.server import start
from keyctl.server.policy import SYNCED_MESSAGE
from keyctl.webauthn import flows
from tests.webauthn.conftest import Clock, Reference, client


def _register(reference: Reference, email: str, key: VirtualAuthenticator) -> flows.Result:
    with reference.account(email) as session:
        return flows.register(session, client(reference.url, lambda: connect(key)), flows.Request(user=email))


def _login(reference: Reference, key: VirtualAuthenticator, email: str) -> flows.Result:
    with reference.session() as session:
        return flows.login(session, client(reference.url, lambda: connect(key)), flows.Request(user=email))


def _passkeys(reference: Reference) -> dict[str, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {reference.server.admin_token}"}
    with httpx.Client(base_url=reference.url, headers=headers) as admin:
        users = admin.get("/api/admin/users").json()["users"]
    return {u["email"]: u["passkeys"][0] for u in users if u["passkeys"]}


def test_the_server_and_the_audit_see_each_kind(
    cli: Any, reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {kind: VirtualAuthenticator(new_state(kind=kind)) for kind in Kind}
    for kind, key in keys.items():
        assert _register(reference, f"{kind}@example.com", key).verified
        for _ in range(2):  # keyctl's server accepts a synced passkey's counter of 0 every time
            assert _login(reference, key, f"{kind}@example.com").verified
    stored = _passkeys(reference)
    seen = {
        email: (p["backup_eligible"], p["backed_up"], p["sign_count"] > 0, p["transports"], p["aaguid"])
        for email, p in stored.items()
    }
    assert seen["synced@example.com"] == (
        True,
        True,
        False,
        ["hybrid", "internal"],
        Kind.SYNCED.provider_aaguid,
    )
    assert seen["platform@example.com"][:4] == (False, False, True, ["internal"])
    assert seen["platform@example.com"][4] == Kind.PLATFORM.provider_aaguid
    assert seen["security-key@example.com"][:4] == (False, False, True, ["usb"])
    assert {p["attestation_format"] for p in stored.values()} == {"none"}

    monkeypatch.setenv("ADMIN_TOKEN", reference.server.admin_token)
    policy = tmp_path / "policy.toml"
    policy.write_text("device_bound_only = true\n")
    result = cli(
        "audit", "server", "--server", reference.url, "--admin-token-env", "ADMIN_TOKEN", "--json",
        "--policy", str(policy), "--fail-on", "critical",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    findings = json.loads(result.stdout)["findings"]
    synced = {f["subject"].split(" / ")[0] for f in findings if f["code"] == "policy.synced_passkey"}
    assert synced == {"synced@example.com"}


def test_a_passkey_made_on_one_device_signs_in_from_its_clone(reference: Reference) -> None:
    phone = new_state(kind=Kind.SYNCED)
    assert _register(reference, "ana@example.com", VirtualAuthenticator(phone)).verified
    laptop = VirtualAuthenticator(clone("phone", phone, "laptop"))
    first = _login(reference, laptop, "ana@example.com")
    assert first.verified
    assert first.credential_id == _passkeys(reference)["ana@example.com"]["id"]
    assert _login(reference, VirtualAuthenticator(phone), "ana@example.com").verified  # both, counter 0


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Reference]:
    clock = Clock()
    db = tmp_path / "strict.sqlite3"
    with start(db, clock=clock, rate_limit=100_000, device_bound_only=True) as server:
        yield Reference(server, clock)


def test_device_bound_only_site_refuses_the_synced_kind(strict: Reference) -> None:
    with pytest.raises(VerificationFailed) as refused:
        _register(strict, "sam@example.com", VirtualAuthenticator(new_state(kind=Kind.SYNCED)))
    assert refused.value.exit_code == ExitCode.VERIFICATION_FAILED
    assert SYNCED_MESSAGE in refused.value.message
    assert "sam@example.com" not in _passkeys(strict)
    for kind in (Kind.PLATFORM, Kind.SECURITY_KEY):
        key = VirtualAuthenticator(new_state(kind=kind))
        assert _register(strict, f"{kind}@example.com", key).verified
        assert _login(strict, key, f"{kind}@example.com").verified
