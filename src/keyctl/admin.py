"""The admin API of keyctl's reference server, as ``keyctl admin``, ``keyctl audit server`` and
``keyctl enroll`` use it: where the server and its token come from, and one call per endpoint.

The server URL comes from ``--server``, else ``$KEYCTL_ADMIN_SERVER``, else the stored profile
(``admin.json`` in the config dir, written by ``keyctl admin login``); the token from the environment
variable named by ``--token-env``, else ``$KEYCTL_ADMIN_TOKEN``, else the OS keyring entry
``admin:URL`` that ``keyctl admin login`` stored. Tokens never travel in argv or files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from keyctl.config import config_dir
from keyctl.errors import (
    AlreadyExists,
    InvalidInput,
    KeyctlError,
    NotFound,
    ServerUnavailable,
    SignInFailed,
    StepUpRequired,
)

STEP_UP_HEADER = "Keyctl-Step-Up"  # where a named admin's step-up token goes (the reference server)
STEP_UP_REMEDY = (
    "pass --as ADMIN_EMAIL with --totp NAME, --totp-secret-env VAR or --device SPEC: a code or passkey "
    "of that admin's own account"
)
ENV_SERVER = "KEYCTL_ADMIN_SERVER"
ENV_TOKEN = "KEYCTL_ADMIN_TOKEN"
PROFILE_FILE = "admin.json"
PAGE_SIZE = 200  # users per page (the reference server's maximum)
# Where the paged endpoints are; a server profile's [admin] table can name others (keyctl audit server).
DEFAULT_PATHS: Mapping[str, str] = {"users": "/api/admin/users", "audit": "/api/admin/audit"}


def keyring_account(server: str) -> str:
    return f"admin:{server}"


def check_url(server: str) -> str:
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{server!r} is not an http(s) URL", "e.g. --server http://127.0.0.1:8765")
    return server.rstrip("/")


def stored_server() -> str | None:
    try:
        document = json.loads((config_dir() / PROFILE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    server = document.get("server") if isinstance(document, dict) else None
    return server if isinstance(server, str) else None


def store_profile(server: str, token: str) -> None:
    """``keyctl admin login``: the URL in admin.json, the token in the OS keyring."""
    from keyctl import secrets
    from keyctl.fileio import atomic_write

    secrets.set_secret(keyring_account(server), token)
    atomic_write(config_dir() / PROFILE_FILE, json.dumps({"server": server}).encode() + b"\n", mode=0o600)


def forget_profile() -> str | None:
    """``keyctl admin logout``: the stored server (None if there was none), its token deleted."""
    from keyctl import secrets

    server = stored_server()
    if server is not None:
        secrets.delete_secret(keyring_account(server))
        (config_dir() / PROFILE_FILE).unlink(missing_ok=True)
    return server


def resolve(
    server: str | None, token_env: str | None, ask: Callable[[], str] | None = None
) -> tuple[str, str]:
    """The server URL and token, from options, environment variables or the stored profile (or, when
    none has a token, from ``ask``: a prompt or stdin)."""
    url = server or os.environ.get(ENV_SERVER) or stored_server()
    if not url:
        raise InvalidInput(
            "no admin server given",
            f"pass --server URL, set ${ENV_SERVER}, or store one with 'keyctl admin login --server URL'",
        )
    url = check_url(url)
    variable = token_env or (ENV_TOKEN if os.environ.get(ENV_TOKEN) else None)
    if variable is not None:
        token = os.environ.get(variable)
        if not token:
            raise InvalidInput(f"environment variable {variable} is not set or empty", f"export {variable}")
        return url, token
    from keyctl import secrets

    stored = secrets.get_secret(keyring_account(url)) if ask is None or stored_server() == url else None
    if stored is None and ask is not None:
        return url, ask()
    if stored is None:
        raise InvalidInput(
            f"no admin token for {url}",
            f"pass --token-env VAR, set ${ENV_TOKEN}, or run 'keyctl admin login --server {url}'",
        )
    return url, stored


@dataclass(frozen=True)
class AuditQuery:
    user: str | None = None
    event: str | None = None
    since: str | None = None  # ISO 8601, compared with the events' times


class AdminApi:
    """One method per admin endpoint; refusals become catalogue errors with the server's message."""

    def __init__(
        self, server: str, token: str, timeout: float = 30.0, paths: Mapping[str, str] = DEFAULT_PATHS
    ) -> None:
        import httpx

        self.server = check_url(server)
        self.paths = paths
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            verify=urlsplit(self.server).scheme == "https",
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.request(method, path, json=body, params=query)
        except httpx.HTTPError as error:
            raise ServerUnavailable(
                f"cannot reach {self.server} ({type(error).__name__})",
                "check the URL and that the server is running",
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code < 300 and isinstance(answer, dict):
            return answer
        if response.status_code < 300:
            raise ServerUnavailable(
                f"{self.server}{path} answered {method} with JSON of an unexpected shape"
                if answer is not None
                else f"{self.server}{path} did not answer {method} with JSON",
                "check that this is a keyctl server (or give its --profile)",
            )
        raise _refusal(self.server, method, path, response.status_code, answer)

    # a named admin's step-up, for the actions that remove an account's protection
    def step_up_totp(self, email: str, code: str) -> None:
        self._stepped_up(self._call("POST", "/api/admin/step-up/totp", {"email": email, "code": code}))

    def step_up_passkey_options(self, email: str) -> dict[str, Any]:
        return self._call("POST", "/api/admin/step-up/passkey/options", {"email": email})

    def step_up_passkey_verify(self, response: Mapping[str, Any]) -> None:
        self._stepped_up(self._call("POST", "/api/admin/step-up/passkey/verify", response))

    def _stepped_up(self, answer: Mapping[str, Any]) -> None:
        """The later requests carry the step-up's token."""
        token = answer.get("step_up_token")
        if not isinstance(token, str):
            raise ServerUnavailable(
                f"{self.server} answered the step-up without a token", "check that this is a keyctl server"
            )
        self._http.headers[STEP_UP_HEADER] = token

    # users
    def users(self) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = {"limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", self.paths["users"], query=query)
            yield from page.get("users", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def user(self, email: str) -> dict[str, Any]:
        wanted = email.strip().lower()
        for user in self.users():
            if user.get("email") == wanted:
                return user
        raise NotFound(
            f"no account {email} on {self.server}", "list the accounts with: keyctl admin users list"
        )

    def add_user(self, email: str, password: str) -> dict[str, Any]:
        return self._call("POST", "/api/admin/users", {"email": email, "password": password})

    def reset_2fa(self, email: str) -> dict[str, Any]:
        return self._call("POST", f"/api/admin/users/{quote(email, safe='')}/reset-2fa", {})

    def delete_user(self, email: str) -> None:
        self._call("DELETE", f"/api/admin/users/{quote(email, safe='')}")

    # invites
    def invite(self, email: str) -> dict[str, Any]:
        return self._call("POST", "/api/admin/invites", {"email": email})

    def invites(self) -> list[dict[str, Any]]:
        """The pending invites (not used, not expired), oldest first."""
        return list(self._call("GET", "/api/admin/invites").get("invites", []))

    def revoke_invite(self, invite_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/api/admin/invites/{quote(invite_id, safe='')}")["invite"])

    # passkeys
    def rename_passkey(self, email: str, credential_id: str, name: str) -> dict[str, Any]:
        return self._call(
            "PATCH",
            f"/api/admin/users/{quote(email, safe='')}/passkeys/{quote(credential_id, safe='')}",
            {"name": name},
        )

    def delete_passkey(self, email: str, credential_id: str) -> None:
        self._call(
            "DELETE", f"/api/admin/users/{quote(email, safe='')}/passkeys/{quote(credential_id, safe='')}"
        )

    # brute-force blocks
    def blocks(self) -> list[dict[str, Any]]:
        """Every block: an account's from one IP (``kind`` "account"), and a whole IP's ("ip", with
        ``until``, when its allowance of failed sign-ins has refilled) on servers that have those."""
        answer = self._call("GET", "/api/admin/blocks")
        accounts = [{"kind": "account", **block} for block in answer.get("blocks", [])]
        return accounts + [{"kind": "ip", "email": None, **block} for block in answer.get("ip_blocks", [])]

    def unblock(self, ip: str, email: str | None) -> int:
        count = self._call("POST", "/api/admin/unblock", {"ip": ip, **({"email": email} if email else {})})
        return int(count.get("unblocked", 0))

    # audit log
    def audit(self, query: AuditQuery, after: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The events after id ``after`` that match ``query``, and the id to continue from."""
        events: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", self.paths["audit"], query={"after": after, "limit": 1000})
            batch = page.get("events", [])
            if batch:
                after = max(after, *(int(event["id"]) for event in batch))
            events.extend(event for event in batch if _matches(event, query))
            if page.get("next_after") is None:
                return events, after


def _matches(event: Mapping[str, Any], query: AuditQuery) -> bool:
    if query.user is not None and event.get("email") != query.user.strip().lower():
        return False
    if query.event is not None and event.get("event") != query.event:
        return False
    return query.since is None or str(event.get("time", "")) >= query.since


_STEP_UP_FIXES = {
    "invalid_code": "check that --totp or --totp-secret-env holds the --as admin's own TOTP secret",
    "blocked": "too many wrong codes: use the unblock link the server emailed the admin, or lift the block",
}


def _refusal(server: str, method: str, path: str, status: int, answer: Any) -> KeyctlError:
    said = answer.get("message") if isinstance(answer, dict) else None
    detail = f"{method} {server}{path} answered HTTP {status}" + (
        f": {said}" if isinstance(said, str) else ""
    )
    code = answer.get("error") if isinstance(answer, dict) else None
    if code == "step_up_required":
        return StepUpRequired(str(said) if said else detail, STEP_UP_REMEDY)
    if code in _STEP_UP_FIXES:  # only the step-up checks codes on the admin API
        return SignInFailed(f"{server} refused the step-up: {said}", _STEP_UP_FIXES[code])
    if status == 401 or status == 403:
        return SignInFailed(
            f"{server} refused the admin token ({status})",
            f"pass the server's admin token with --token-env VAR or ${ENV_TOKEN}",
        )
    if answer is None:
        return ServerUnavailable(f"{detail} without JSON", "check that the URL is a keyctl server")
    if code == "not_found" and said == "no such page or endpoint":
        return ServerUnavailable(
            detail, "this server has no such admin endpoint: check the URL (and its version)"
        )
    if status == 404:
        return NotFound(detail, "list the accounts with: keyctl admin users list")
    if status == 409:
        return AlreadyExists(detail, "list the accounts with: keyctl admin users list")
    if 400 <= status < 500 and status != 429:
        return InvalidInput(detail, "check the values given")
    return ServerUnavailable(detail, "try again later; check the server's log")


def since_iso(text: str, now: float) -> str:
    """``--since``: a duration back from now (30m, 12h, 7d) or an ISO date/time (UTC unless it says)."""
    import re
    from datetime import UTC, datetime

    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match:
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        moment = datetime.fromtimestamp(now - seconds, UTC)
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"--since {text!r} is neither a duration nor an ISO date",
                "e.g. --since 30m, 7d or 2026-12-01",
            ) from None
        moment = moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
