"""Audit rules for a connected security key: model and status from FIDO metadata, firmware, PIN settings,
and whether its attestation chains to a root the metadata lists for its AAGUID (a genuine key)."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from keyctl.audit.findings import Finding, Policy, Severity, model_findings
from keyctl.audit.mds import MetadataBlob, MetadataEntry, chain_leads_to
from keyctl.device.key import Attested, KeyInfo, SecurityKey
from keyctl.errors import KeyctlError, NotSupported, NotVerified, PinAuthBlocked, PinBlocked

AUDIT_RP_ID = "audit.keyctl.invalid"  # a reserved name: no real site can ever ask for this credential
LOW_SLOTS = 3


@dataclass(frozen=True)
class KeyFacts:
    label: str  # how the user named the device (spec or path)
    info: KeyInfo
    attestation: Attested | None  # None when it could not be sampled (see attestation_problem)
    attestation_problem: str | None
    credentials_per_rp: dict[str, int] | None  # None without the PIN, or on a key without credMgmt


def inspect_key(
    key: SecurityKey, label: str, pin: str | None, on_touch_needed: Callable[[], None]
) -> KeyFacts:
    """Gather what the audit needs from one key. The attestation sample is a non-resident credential for
    AUDIT_RP_ID; a key that kept one anyway (or an earlier interrupted audit) has it deleted again
    through credMgmt when the PIN is known."""
    info = key.info()
    if not info.pin_set:
        pin = None
    try:
        attested, problem = key.attestation_sample(AUDIT_RP_ID, pin, on_touch_needed), None
    except (NotVerified, PinBlocked, PinAuthBlocked):
        raise  # a wrong PIN must not be tried again, on this key or on the next
    except KeyctlError as error:
        attested, problem = None, error.message
    if pin is None:
        return KeyFacts(label, info, attested, problem, None)
    try:
        stored = key.credentials(pin)
    except NotSupported:
        return KeyFacts(label, info, attested, problem, None)
    for leftover in [c for c in stored if c.rp_id == AUDIT_RP_ID]:
        key.delete_credential(pin, leftover.credential_id)
    per_rp = Counter(c.rp_id for c in stored if c.rp_id != AUDIT_RP_ID)
    return KeyFacts(label, info, attested, problem, dict(per_rp))


def unreachable(label: str, error: KeyctlError) -> Finding:
    """A key that vanished or never answered: it could not be checked, so the audit must not pass."""
    return Finding(
        Severity.HIGH,
        "key.unreachable",
        label,
        f"could not be audited: {error.message}",
        error.remedy or "reconnect the key and rerun the audit",
    )


def key_row(facts: KeyFacts, metadata: MetadataBlob | None) -> dict[str, object]:
    """One connected key as the report's inventory lists it."""
    info = facts.info
    entry = metadata.find(info.aaguid) if metadata else None
    attested = facts.attestation
    if attested is None:
        attestation = "unchecked"
    elif attested.problem or not attested.chain or entry is None:
        attestation = attested.kind
    else:
        attestation = "genuine" if attestation_genuine(attested, entry) else "untrusted"
    return {
        "device": facts.label,
        "aaguid": info.aaguid,
        "model": entry.description if entry else None,
        "certification": entry.certification if entry else None,
        "firmware": info.firmware_version,
        "fixed_firmware": entry.fixed_firmware if entry else None,
        "pin_set": info.pin_set,
        "min_pin_length": info.min_pin_length,
        "always_uv": bool(info.options.get("alwaysUv")),
        "attestation": attestation,
        "remaining_slots": info.remaining_discoverable_credentials,
        "credentials_per_rp": facts.credentials_per_rp,
    }


def attestation_genuine(attested: Attested, entry: MetadataEntry) -> bool:
    """True when the attestation certificate chain leads to one of the metadata's roots for this model."""
    from cryptography import x509

    if not attested.chain:
        return False
    chain = [x509.load_der_x509_certificate(der) for der in attested.chain]
    for encoded in entry.attestation_roots:
        try:
            root = x509.load_der_x509_certificate(base64.b64decode(encoded))
        except ValueError:
            continue
        if chain[-1] == root:
            chain = chain[:-1] or chain
        if chain_leads_to(chain, root):
            return True
    return False


def audit_key(facts: KeyFacts, metadata: MetadataBlob | None, policy: Policy) -> Iterator[Finding]:
    info = facts.info
    entry = metadata.find(info.aaguid) if metadata else None
    model = entry.description if entry else f"AAGUID {info.aaguid}"
    subject = f"{facts.label} ({model})"
    if entry is None:
        yield Finding(
            Severity.MEDIUM,
            "key.model_unknown",
            subject,
            "the model is not in the FIDO metadata",
            "run 'keyctl mds update'; an uncertified key cannot be checked for recalls",
        )
    else:
        fixed = entry.fixed_firmware
        if fixed is not None and info.firmware_version < fixed:
            yield Finding(
                Severity.HIGH,
                "key.firmware_outdated",
                subject,
                f"firmware {info.firmware_version} is older than {fixed}, which fixes a reported problem",
                "update the firmware with the vendor's tool, or replace the key",
            )
    yield from model_findings(info.aaguid, entry, policy, subject)
    yield from _attestation_findings(facts, entry, subject)
    if not info.pin_set:
        yield Finding(
            Severity.MEDIUM,
            "key.no_pin",
            subject,
            "has no PIN: anyone holding it can use it",
            "set one: keyctl key pin set",
        )
    elif info.min_pin_length < policy.min_pin_length:
        yield Finding(
            Severity.LOW,
            "key.short_min_pin",
            subject,
            f"minimum PIN length {info.min_pin_length} is below the policy's {policy.min_pin_length}",
            f"keyctl key config min-pin-length {policy.min_pin_length}",
        )
    if policy.require_always_uv and not info.options.get("alwaysUv"):
        yield Finding(
            Severity.LOW, "key.always_uv_off", subject, "alwaysUv is off", "keyctl key config always-uv on"
        )
    if (
        info.remaining_discoverable_credentials is not None
        and info.remaining_discoverable_credentials < LOW_SLOTS
    ):
        yield Finding(
            Severity.LOW,
            "key.slots_low",
            subject,
            f"only {info.remaining_discoverable_credentials} discoverable credential slots left",
            "delete unused ones: keyctl key creds list / delete",
        )
    if facts.credentials_per_rp:
        held = ", ".join(f"{rp} ({n})" for rp, n in sorted(facts.credentials_per_rp.items()))
        yield Finding(
            Severity.INFO,
            "key.resident_credentials",
            subject,
            f"holds passkeys for {held}",
            "review them (keyctl key creds list) and delete the ones no longer used",
        )


def _attestation_findings(facts: KeyFacts, entry: MetadataEntry | None, subject: str) -> Iterator[Finding]:
    attested = facts.attestation
    if attested is None:
        yield Finding(
            Severity.LOW,
            "key.attestation_unchecked",
            subject,
            f"attestation not checked: {facts.attestation_problem}",
            "rerun with the key's PIN (--pin-env VAR) and touch the key when it blinks",
        )
    elif attested.problem:
        yield Finding(
            Severity.HIGH,
            "key.attestation_invalid",
            subject,
            attested.problem,
            "do not trust this key; replace it",
        )
    elif not attested.chain:
        yield Finding(
            Severity.MEDIUM,
            "key.attestation_self",
            subject,
            f"gives {attested.kind} attestation only: its make and model cannot be proven",
            "use a key with certified (basic) attestation",
        )
    elif entry is not None and not attestation_genuine(attested, entry):
        yield Finding(
            Severity.HIGH,
            "key.attestation_untrusted",
            subject,
            "its attestation certificate does not chain to the metadata's roots for its model",
            "the key may be counterfeit: do not enroll it",
        )
