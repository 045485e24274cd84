"""Read every user and passkey of a relying party through its admin API (keyctl's reference server).

Pages are streamed: users are yielded as they arrive so memory stays flat for large servers.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from keyctl.audit.findings import Passkey, UserRecord
from keyctl.audit.mds import MetadataBlob
from keyctl.errors import InvalidInput, ServerUnavailable, SignInFailed

PAGE_SIZE = 200


class AdminClient:
    """The admin API as a server profile's ``[admin]`` table names it: ``users`` (paged by cursor) and
    ``audit`` (the audit log, paged by id), with keyctl's reference-server shapes."""

    def __init__(self, base_url: str, token: str, paths: Mapping[str, str], timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"{base_url!r} is not an http(s) URL", "e.g. --server http://127.0.0.1:8765")
        missing = sorted({"users", "audit"} - set(paths))
        if missing:
            raise InvalidInput(
                f"the server profile does not say where the admin API's {missing[0]} endpoint is",
                "add an [admin] table with users and audit paths to the profile (see the keyctl profile)",
            )
        self.paths = paths
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as error:
            raise ServerUnavailable(
                f"Passkey unavailable: cannot reach {self.base_url} ({type(error).__name__})",
                "check the URL and that the server is running",
            ) from None
        if response.status_code in (401, 403):
            raise SignInFailed(
                f"{self.base_url} refused the admin token (HTTP {response.status_code})",
                "pass the server's admin token with --token-env VAR (or $KEYCTL_ADMIN_TOKEN)",
            )
        if response.status_code != 200:
            raise ServerUnavailable(
                f"Passkey unavailable: {self.base_url}{path} answered HTTP {response.status_code}",
                "check that this is a keyctl server (or give its --profile)",
            )
        try:
            body = response.json()
        except ValueError:
            raise ServerUnavailable(
                f"Passkey unavailable: {self.base_url}{path} did not answer JSON", ""
            ) from None
        if not isinstance(body, dict):
            raise ServerUnavailable(f"{self.base_url}{path} answered JSON of an unexpected shape", "")
        return body

    def counter_anomalies(self) -> Counter[str]:
        """How often each credential's sign counter went backwards, from the audit log."""
        anomalies: Counter[str] = Counter()
        after: int | None = 0
        while after is not None:
            page = self._get(self.paths["audit"], {"after": after, "limit": 1000})
            for event in page.get("events", []):
                if event.get("event") == "counter_regression":
                    credential = (event.get("detail") or {}).get("credential_id")
                    if isinstance(credential, str):
                        anomalies[credential] += 1
            after = page.get("next_after")
        return anomalies

    def users(self, anomalies: Counter[str] | None = None) -> Iterator[UserRecord]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            page = self._get(self.paths["users"], params)
            for user in page.get("users", []):
                yield _user_record(user, anomalies or Counter())
            cursor = page.get("next_cursor")
            if not cursor:
                return


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
