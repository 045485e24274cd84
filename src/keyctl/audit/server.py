"""Read every user and passkey of a relying party through its admin API (keyctl's reference server), with
the one admin client keyctl has (``keyctl.admin.AdminApi``).

Pages are streamed: users are yielded as they arrive so memory stays flat for large servers.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from keyctl.admin import AdminApi, AuditQuery
from keyctl.audit.findings import Passkey, UserRecord
from keyctl.audit.mds import MetadataBlob
from keyctl.errors import InvalidInput, ServerUnavailable


def admin_api(server: str, token: str, paths: Mapping[str, str]) -> AdminApi:
    """The admin API at the paths a server profile's ``[admin]`` table names (users, paged by cursor;
    the audit log, paged by id; keyctl's reference-server shapes)."""
    missing = sorted({"users", "audit"} - set(paths))
    if missing:
        raise InvalidInput(
            f"the server profile does not say where the admin API's {missing[0]} endpoint is",
            "add an [admin] table with users and audit paths to the profile (see the keyctl profile)",
        )
    return AdminApi(server, token, paths=paths)


def counter_anomalies(api: AdminApi) -> Counter[str]:
    """How often each credential's sign counter went backwards, from the audit log."""
    anomalies: Counter[str] = Counter()
    events, _ = api.audit(AuditQuery(event="counter_regression"))
    for event in events:
        credential = (event.get("detail") or {}).get("credential_id")
        if isinstance(credential, str):
            anomalies[credential] += 1
    return anomalies


def user_records(api: AdminApi, anomalies: Counter[str]) -> Iterator[UserRecord]:
    """Every user with their passkeys, streamed page by page."""
    for user in api.users():
        yield _user_record(user, anomalies)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _user_record(user: dict[str, Any], anomalies: Counter[str]) -> UserRecord:
    try:
        passkeys = tuple(
            Passkey(
                credential_id=p["id"],
                name=p["name"],
                aaguid=str(uuid.UUID(p["aaguid"])),
                created=_time(p["created_at"]),
                last_used=_time(p["last_used_at"]) if p.get("last_used_at") else None,
                sign_count=int(p["sign_count"]),
                backup_eligible=bool(p["backup_eligible"]),
                backed_up=bool(p["backed_up"]),
                attestation_format=p.get("attestation_format"),
                counter_anomalies=anomalies[p["id"]],
            )
            for p in user.get("passkeys", [])
        )
        return UserRecord(email=user["email"], passkeys=passkeys)
    except (KeyError, TypeError, ValueError) as error:
        raise ServerUnavailable(
            f"the admin API returned a user record keyctl cannot read ({type(error).__name__}: {error})",
            "check that this is a keyctl server (or give its --profile)",
        ) from None


def passkey_rows(user: UserRecord, metadata: MetadataBlob | None) -> Iterator[dict[str, object]]:
    """The user's passkeys as the report's inventory lists them."""
    lookup = metadata.by_aaguid if metadata else {}
    for p in user.passkeys:
        entry = lookup.get(p.aaguid)
        yield {
            "user": user.email,
            "name": p.name,
            "aaguid": p.aaguid,
            "model": entry.description if entry else None,
            "created": p.created.isoformat(timespec="seconds"),
            "last_used": p.last_used.isoformat(timespec="seconds") if p.last_used else None,
            "sign_count": p.sign_count,
            "backup_eligible": p.backup_eligible,
            "backed_up": p.backed_up,
            "attestation_format": p.attestation_format,
            "counter_anomalies": p.counter_anomalies,
        }


def model_rows(passkeys_per_aaguid: Counter[str], metadata: MetadataBlob | None) -> list[dict[str, object]]:
    """Which authenticator models the server's passkeys come from, most used first."""
    lookup = metadata.by_aaguid if metadata else {}
    rows: list[dict[str, object]] = []
    for aaguid, count in passkeys_per_aaguid.most_common():
        entry = lookup.get(aaguid)
        rows.append(
            {
                "aaguid": aaguid,
                "model": entry.description if entry else None,
                "certification": entry.certification if entry else None,
                "status": entry.latest_status if entry else None,
                "passkeys": count,
            }
        )
    return rows
