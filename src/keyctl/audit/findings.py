"""Audit findings and the rules that produce them from registered passkeys and FIDO metadata.

Inputs are plain records (fetched from a server's admin API by the caller) so the rules are pure
functions: same records, metadata, policy and clock, same findings.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from pathlib import Path

from keyctl.audit.mds import CERTIFICATION_STATUSES, MetadataBlob, MetadataEntry, normalize_aaguid
from keyctl.errors import InvalidInput

ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"
PASSKEY_LIMIT = 5


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> Severity:
        try:
            return cls[name.upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise InvalidInput(f"unknown severity {name!r}", f"use one of: {choices}") from None


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str  # stable identifier, e.g. "passkey.stale"
    subject: str  # who or what: a user, a passkey, a device
    message: str
    fix: str


@dataclass(frozen=True)
class Passkey:
    credential_id: str
    name: str
    aaguid: str
    created: datetime
    last_used: datetime | None
    sign_count: int
    backup_eligible: bool
    backed_up: bool
    attestation_format: str | None  # None when the server does not say
    counter_anomalies: int = 0


@dataclass(frozen=True)
class UserRecord:
    email: str
    passkeys: tuple[Passkey, ...]


@dataclass(frozen=True)
class Policy:
    stale_days: int = 90
    allowed_aaguids: frozenset[str] | None = None  # None: any model
    min_certification: str | None = None  # e.g. FIDO_CERTIFIED_L1
    device_bound_only: bool = False
    require_passkey: bool = True
    min_pin_length: int = 6  # for connected keys
    require_always_uv: bool = False


def load_policy(path: Path | None, stale_days: int | None = None) -> Policy:
    """Read a policy TOML file (allowed_aaguids, min_certification, device_bound_only, stale_days,
    require_passkey); no file means the defaults. ``stale_days`` overrides the file's value."""
    try:
        data = tomllib.loads(path.read_text()) if path else {}
    except OSError as error:
        raise InvalidInput(f"cannot read policy file {path}: {error.strerror}", "check the path") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"policy file {path} is not valid TOML: {error}", "fix the syntax") from None
    known = {
        "allowed_aaguids",
        "min_certification",
        "device_bound_only",
        "stale_days",
        "require_passkey",
        "min_pin_length",
        "require_always_uv",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(
            f"policy file {path}: unknown key {unknown[0]!r}", f"known keys: {', '.join(sorted(known))}"
        )
    allowed = data.get("allowed_aaguids")
    certification = data.get("min_certification")
    if certification is not None and certification not in CERTIFICATION_STATUSES[1:]:
        raise InvalidInput(
            f"policy file {path}: min_certification {certification!r} is not a FIDO certification level",
            f"use one of: {', '.join(CERTIFICATION_STATUSES[1:])}",
        )
    days = stale_days if stale_days is not None else data.get("stale_days", Policy.stale_days)
    if not isinstance(days, int) or days < 1:
        raise InvalidInput(
            f"stale_days must be a positive whole number, got {days!r}", "e.g. stale_days = 90"
        )
    min_pin = data.get("min_pin_length", Policy.min_pin_length)
    if not isinstance(min_pin, int) or not 4 <= min_pin <= 63:
        raise InvalidInput(f"min_pin_length must be 4 to 63, got {min_pin!r}", "e.g. min_pin_length = 6")
    return Policy(
        stale_days=days,
        min_pin_length=min_pin,
        require_always_uv=bool(data.get("require_always_uv", False)),
        allowed_aaguids=None if allowed is None else frozenset(normalize_aaguid(a) for a in allowed),
        min_certification=certification,
        device_bound_only=bool(data.get("device_bound_only", False)),
        require_passkey=bool(data.get("require_passkey", True)),
    )


def certification_rank(status: str | None) -> int:
    return CERTIFICATION_STATUSES.index(status) if status in CERTIFICATION_STATUSES else 0


def audit_users(
    users: Iterable[UserRecord], metadata: MetadataBlob | None, policy: Policy, now: datetime
) -> Iterator[Finding]:
    """Findings for every user and passkey, in input order (callers sort by severity)."""
    lookup = metadata.by_aaguid if metadata else {}
    stale_before = now - timedelta(days=policy.stale_days)
    for user in users:
        if not user.passkeys and policy.require_passkey:
            yield Finding(
                Severity.LOW,
                "user.no_passkey",
                user.email,
                "has no passkey",
                "ask the user to register a security key or passkey",
            )
        if len(user.passkeys) >= PASSKEY_LIMIT:
            yield Finding(
                Severity.INFO,
                "user.passkey_limit",
                user.email,
                f"is at the limit of {PASSKEY_LIMIT} passkeys",
                "remove unused passkeys before adding new ones",
            )
        for passkey in user.passkeys:
            yield from _audit_passkey(user.email, passkey, lookup, policy, stale_before)


def model_findings(
    aaguid: str, entry: MetadataEntry | None, policy: Policy, subject: str
) -> Iterator[Finding]:
    """What the FIDO metadata and the policy say about an authenticator model: the same rules for a
    connected key and for a registered passkey."""
    model = entry.description if entry else f"AAGUID {aaguid}"
    for report in entry.compromises if entry else ():
        severity = Severity.HIGH if report.status == "USER_VERIFICATION_BYPASS" else Severity.CRITICAL
        yield Finding(
            severity,
            f"model.{report.status.lower()}",
            subject,
            f"{model}: FIDO metadata reports {report.status} "
            f"since {report.effective_date or 'an unknown date'}",
            "replace the authenticator (and delete the passkeys it holds)",
        )
    if policy.allowed_aaguids is not None and aaguid not in policy.allowed_aaguids:
        yield Finding(
            Severity.HIGH,
            "policy.model_not_allowed",
            subject,
            f"{model} is not on the allow-list",
            "use an allowed model (and delete passkeys of this one)",
        )
    if policy.min_certification is not None:
        level = entry.certification if entry else None
        if certification_rank(level) < certification_rank(policy.min_certification):
            yield Finding(
                Severity.MEDIUM,
                "policy.certification",
                subject,
                f"{model} is certified {level or 'not at all'}, below {policy.min_certification}",
                "use a model with the required certification level",
            )


def _audit_passkey(
    email: str, passkey: Passkey, lookup: dict[str, MetadataEntry], policy: Policy, stale_before: datetime
) -> Iterator[Finding]:
    subject = f"{email} / {passkey.name}"
    entry = lookup.get(passkey.aaguid)
    model = entry.description if entry else f"AAGUID {passkey.aaguid}"
    if passkey.counter_anomalies:
        yield Finding(
            Severity.HIGH,
            "passkey.counter_anomaly",
            subject,
            f"sign counter went backwards {passkey.counter_anomalies} time(s): "
            "possibly a cloned authenticator",
            "ask the user whether the key was lost; delete the passkey if in doubt",
        )
    last = passkey.last_used or passkey.created
    if last < stale_before:
        yield Finding(
            Severity.MEDIUM,
            "passkey.stale",
            subject,
            f"unused since {last:%Y-%m-%d} (over {policy.stale_days} days)",
            "confirm the user still has the authenticator, or delete the passkey",
        )
    yield from model_findings(passkey.aaguid, entry, policy, subject)
    if entry is None and passkey.aaguid != ZERO_AAGUID:
        yield Finding(
            Severity.LOW,
            "model.unknown",
            subject,
            f"{model} is not in the FIDO metadata",
            "check the model by hand, or run 'keyctl mds update'",
        )
    # Backup eligibility is fixed when the passkey is made: BE=1 is a synced passkey even before its
    # first backup (BS=0), and a device-bound one never carries it.
    if policy.device_bound_only and (passkey.backup_eligible or passkey.backed_up):
        state = "backed up" if passkey.backed_up else "backup-eligible, not yet backed up"
        yield Finding(
            Severity.MEDIUM,
            "policy.synced_passkey",
            subject,
            f"is a synced passkey ({state}) where policy wants device-bound ones",
            "register a security key and delete this passkey",
        )
