from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyctl.audit import mds
from keyctl.audit.findings import (
    ZERO_AAGUID,
    Finding,
    Passkey,
    Policy,
    Severity,
    UserRecord,
    audit_users,
    load_policy,
)
from keyctl.audit.report import grouped, json_lines, sort_findings, to_csv, to_html
from keyctl.errors import InvalidInput

from .mds_factory import REVOKED_KEY, YUBIKEY_5, standard_entries

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
METADATA = mds.parse_payload(
    {"no": 1, "nextUpdate": "2026-12-01", "entries": standard_entries()}, source="test", verified=True
)


def passkey(name: str = "key", aaguid: str = YUBIKEY_5, days_unused: int = 1, **changes: object) -> Passkey:
    fields: dict[str, object] = {
        "credential_id": f"cred-{name}",
        "name": name,
        "aaguid": aaguid,
        "created": NOW - timedelta(days=400),
        "last_used": NOW - timedelta(days=days_unused),
        "sign_count": 10,
        "backup_eligible": False,
        "backed_up": False,
        "attestation_format": "packed",
    }
    fields.update(changes)
    return Passkey(**fields)  # type: ignore[arg-type]


def codes(users: list[UserRecord], policy: Policy | None = None) -> list[tuple[str, Severity]]:
    return [(f.code, f.severity) for f in audit_users(users, METADATA, policy or Policy(), NOW)]


def test_a_healthy_user_has_no_findings() -> None:
    assert codes([UserRecord("ok@example.com", (passkey(),))]) == []


def test_user_without_passkey() -> None:
    user = UserRecord("new@example.com", ())
    assert codes([user]) == [("user.no_passkey", Severity.LOW)]
    assert codes([user], Policy(require_passkey=False)) == []


def test_user_at_the_passkey_limit() -> None:
    user = UserRecord("full@example.com", tuple(passkey(f"k{i}") for i in range(5)))
    assert codes([user]) == [("user.passkey_limit", Severity.INFO)]


def test_stale_passkey_uses_last_use_or_creation() -> None:
    assert codes([UserRecord("a@x", (passkey(days_unused=91),))]) == [("passkey.stale", Severity.MEDIUM)]
    assert codes([UserRecord("a@x", (passkey(days_unused=89),))]) == []
    never_used = passkey(last_used=None)
    assert codes([UserRecord("a@x", (never_used,))]) == [("passkey.stale", Severity.MEDIUM)]
    assert codes([UserRecord("a@x", (passkey(days_unused=31),))], Policy(stale_days=30)) == [
        ("passkey.stale", Severity.MEDIUM)
    ]


def test_counter_anomaly_is_high() -> None:
    assert codes([UserRecord("a@x", (passkey(counter_anomalies=2),))]) == [
        ("passkey.counter_anomaly", Severity.HIGH)
    ]


def test_revoked_model_is_critical() -> None:
    found = codes([UserRecord("a@x", (passkey(aaguid=REVOKED_KEY),))])
    assert found == [
        ("model.attestation_key_compromise", Severity.CRITICAL),
        ("model.revoked", Severity.CRITICAL),
    ]


def test_unknown_model_but_not_the_zero_aaguid() -> None:
    assert codes([UserRecord("a@x", (passkey(aaguid="12345678-1234-1234-1234-123456789012"),))]) == [
        ("model.unknown", Severity.LOW)
    ]
    assert codes([UserRecord("a@x", (passkey(aaguid=ZERO_AAGUID),))]) == []


def test_policy_rules() -> None:
    user = UserRecord("a@x", (passkey(aaguid=REVOKED_KEY, backed_up=True, backup_eligible=True),))
    policy = Policy(
        allowed_aaguids=frozenset({YUBIKEY_5}), min_certification="FIDO_CERTIFIED_L2", device_bound_only=True
    )
    found = set(codes([user], policy))
    assert {
        ("policy.model_not_allowed", Severity.HIGH),
        ("policy.certification", Severity.MEDIUM),
        ("policy.synced_passkey", Severity.MEDIUM),
    } <= found
    assert codes([UserRecord("b@x", (passkey(),))], policy) == []


def test_load_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        f'allowed_aaguids = ["{YUBIKEY_5.replace("-", "")}"]\nmin_certification = "FIDO_CERTIFIED_L1"\n'
        "device_bound_only = true\nstale_days = 30\n"
    )
    policy = load_policy(path)
    assert policy.allowed_aaguids == frozenset({YUBIKEY_5})
    assert (policy.min_certification, policy.device_bound_only, policy.stale_days) == (
        "FIDO_CERTIFIED_L1",
        True,
        30,
    )
    assert load_policy(path, stale_days=7).stale_days == 7


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("stale_days = ", "not valid TOML"),
        ("colour = 'red'", "unknown key 'colour'"),
        ("min_certification = 'GOLD'", "not a FIDO certification level"),
        ("stale_days = 0", "positive whole number"),
        ("allowed_aaguids = ['xyz']", "is not an AAGUID"),
    ],
)
def test_bad_policy_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=reason):
        load_policy(path)


def _sample() -> list[Finding]:
    return [
        Finding(Severity.LOW, "user.no_passkey", "b@x", "has no passkey", "register one"),
        Finding(Severity.CRITICAL, "model.revoked", "<script>alert(1)</script>", "revoked", "replace it"),
        Finding(Severity.MEDIUM, "passkey.stale", "a@x", "unused", "delete it"),
    ]


def test_reports_sort_by_severity_and_count() -> None:
    ordered = sort_findings(_sample())
    assert [f.severity for f in ordered] == [Severity.CRITICAL, Severity.MEDIUM, Severity.LOW]
    rows = [{"aaguid": YUBIKEY_5, "passkeys": 2}, {"aaguid": REVOKED_KEY, "passkeys": 1}]
    lines = list(json_lines(ordered, {"server": "http://127.0.0.1"}, {"keys": [], "models": rows}))
    data = json.loads("\n".join(lines))
    assert (data["keys"], data["models"]) == ([], rows)
    assert len(lines) == 2 + 2 + (2 + 2) + (2 + 3) + 1  # braces, summary, one line per row
    assert data["summary"]["counts"] == {"critical": 1, "high": 0, "medium": 1, "low": 1, "info": 0}
    assert [f["code"] for f in data["findings"]] == ["model.revoked", "passkey.stale", "user.no_passkey"]


def test_findings_are_grouped_by_severity_most_severe_first() -> None:
    findings = [*_sample(), Finding(Severity.LOW, "user.no_passkey", "a@x", "has no passkey", "register one")]
    groups = grouped(findings)
    assert [(severity, [f.subject for f in group]) for severity, group in groups] == [
        (Severity.CRITICAL, ["<script>alert(1)</script>"]),
        (Severity.MEDIUM, ["a@x"]),
        (Severity.LOW, ["a@x", "b@x"]),
    ]


def test_csv_round_trips() -> None:
    ordered = sort_findings(_sample())
    rows = list(csv.DictReader(io.StringIO(to_csv(ordered))))
    assert [(r["severity"], r["subject"]) for r in rows] == [
        (f.severity.name.lower(), f.subject) for f in ordered
    ]


def test_html_is_self_contained_and_escapes_outside_text() -> None:
    inventory = {"passkeys": [{"user": "<b>eve</b>", "backed_up": True, "last_used": None}]}
    page = to_html(sort_findings(_sample()), "Audit <of> server", {"server": "x"}, NOW, inventory)
    assert "<h2>passkeys (1)</h2>" in page
    assert "<td>&lt;b&gt;eve&lt;/b&gt;</td><td>yes</td><td>-</td>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "src=" not in page
    assert "href=" not in page
    assert "critical: 1" in page


def test_a_backup_eligible_passkey_is_synced_before_its_first_backup() -> None:
    policy = Policy(device_bound_only=True)
    not_yet = UserRecord("a@x", (passkey(backup_eligible=True, backed_up=False),))
    assert ("policy.synced_passkey", Severity.MEDIUM) in codes([not_yet], policy)
    assert codes([UserRecord("b@x", (passkey(),))], policy) == []
