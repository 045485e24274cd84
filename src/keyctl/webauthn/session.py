"""The HTTP side of a ceremony: one httpx client with cookies, JSON in and out, server errors mapped.

Cookies can be loaded from and saved to a Netscape-format cookie jar (the format curl reads with ``-b``),
written atomically with mode 0600 because it holds a live session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from keyctl.errors import (
    CredentialExcluded,
    InvalidInput,
    KeyctlError,
    NoCredential,
    PasskeyError,
    PasskeyLimit,
    PhishingRefused,
    ServerUnavailable,
    SessionExpired,
    SignInFailed,
    StateError,
    StepUpRequired,
    VerificationFailed,
)
from keyctl.fileio import atomic_write
from keyctl.logs import TRAFFIC
from keyctl.webauthn.profile import Profile, ServerError, dig

logger = logging.getLogger(__name__)

_ERRORS: dict[ServerError, type[PasskeyError]] = {
    ServerError.NO_CREDENTIAL: NoCredential,
    ServerError.CREDENTIAL_EXCLUDED: CredentialExcluded,
    ServerError.PASSKEY_LIMIT: PasskeyLimit,
    ServerError.SESSION_EXPIRED: SessionExpired,
    ServerError.VERIFICATION_FAILED: VerificationFailed,
    ServerError.SIGN_IN_FAILED: SignInFailed,
    ServerError.STEP_UP_REQUIRED: StepUpRequired,
    ServerError.SERVER_UNAVAILABLE: ServerUnavailable,
    ServerError.ORIGIN_REFUSED: PhishingRefused,
}
_REMEDIES: dict[ServerError, str] = {
    ServerError.NO_CREDENTIAL: "sign in with password and 2FA, then run 'keyctl register'",
    ServerError.CREDENTIAL_EXCLUDED: "this authenticator is already registered for the account",
    ServerError.PASSKEY_LIMIT: "delete one first (account page, or: keyctl admin passkeys delete EMAIL ID)",
    ServerError.SESSION_EXPIRED: "start again: the server's challenge expired or was already used",
    ServerError.VERIFICATION_FAILED: "check that the authenticator is the one registered for this account",
    ServerError.SIGN_IN_FAILED: "check the user name, password and 2FA code",
    ServerError.STEP_UP_REQUIRED: (
        "pass --totp NAME or --totp-secret-env VAR to confirm with a code, or --step-up-device SPEC with a "
        "passkey, or sign in again (a fresh session)"
    ),
    ServerError.SERVER_UNAVAILABLE: "check the server URL and that the server is running",
    ServerError.ORIGIN_REFUSED: "the server belongs to another origin: use its real URL",
}
_MAX_SERVER_TEXT = 160


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SERVER_TEXT else flat[: _MAX_SERVER_TEXT - 1] + "…"


def server_error(
    profile: Profile,
    status: int,
    body: Any,
    finish: bool,
    status_map: Mapping[int, ServerError] | None = None,
) -> KeyctlError:
    """The catalogue error for a refusal: the body's error code, then the step's HTTP statuses, then
    defaults (5xx or no JSON: unavailable; 4xx: verification failed at a finish step, sign-in failed
    before)."""
    code = dig(body, profile.error_code) if profile.error_code else None
    message = dig(body, profile.error_message) if profile.error_message else None
    meaning = profile.error_codes.get(code) if isinstance(code, str) else None
    if meaning is None:
        meaning = (status_map or {}).get(status)
    if meaning is None:
        if not 400 <= status < 500 or body is None:
            meaning = ServerError.SERVER_UNAVAILABLE
        elif finish:
            meaning = ServerError.VERIFICATION_FAILED
        else:
            meaning = ServerError.SIGN_IN_FAILED
    cls = _ERRORS[meaning]
    said = message if isinstance(message, str) and message else code if isinstance(code, str) else ""
    detail = f"server answered {status}" + (f": {_one_line(said)}" if said else "")
    if body is None:
        detail += " without JSON"
    return cls(f"{cls.default_message} ({detail})", _remedy(meaning, code, status))


def _remedy(meaning: ServerError, code: object, status: int) -> str:
    """The fix for the refusal's cause: a wrong URL or a block is not a wrong password."""
    if code == "captcha_required":
        return (
            "the server wants a CAPTCHA from this address (many sign-in attempts came from it): sign in "
            "with a passkey, which needs none, or ask the server's admin to allow this address "
            "(keyctl server --captcha-allow CIDR)"
        )
    if code == "blocked":
        return "too many failed attempts: use the unblock link the server emailed, or ask an admin to lift it"
    if status == 404 and meaning is not ServerError.NO_CREDENTIAL:
        return "the server has no such endpoint: check the server URL and --profile"
    return _REMEDIES[meaning]


class Session:
    """An HTTP client bound to one server and profile."""

    def __init__(self, server_url: str, profile: Profile, origin: str, timeout: float = 30.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.profile = profile
        self.origin = origin  # sent as the Origin header of POSTs, as a browser's fetch() does
        parts = urlsplit(self.server_url)
        # The client only ever talks to server_url (no redirects): for a plain-http (localhost) server,
        # skip loading the CA bundle, which costs a one-shot login ~0.1-0.2 s.
        self.client = httpx.Client(timeout=timeout, follow_redirects=False, verify=parts.scheme == "https")
        host = parts.hostname or ""
        self._localhost = host == "localhost" or host.endswith(".localhost")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        status_map: Mapping[int, ServerError] | None = None,
        finish: bool = False,
    ) -> Any:
        """One JSON request; the decoded JSON answer, or the catalogue error for a refusal."""
        headers = {"Accept": "application/json"}
        if method == "POST":
            headers["Origin"] = self.origin
        if self.profile.csrf_header:
            token = self.client.cookies.get(self.profile.csrf_cookie)
            if token:
                headers[self.profile.csrf_header] = token
        url = self.server_url + path
        logger.debug("%s %s", method, url)
        if body is not None:
            logger.log(TRAFFIC, "request body: %s", body)
        try:
            response = self.client.request(
                method,
                url,
                json=dict(body) if body is not None and method == "POST" else None,
                params=dict(query) if query else None,
                headers=headers,
            )
        except httpx.HTTPError as error:
            if url.startswith("https://") and "SSL" in str(error):
                raise ServerUnavailable(
                    f"Passkey unavailable: the TLS handshake with {self.server_url} failed"
                    f" ({_one_line(str(error))})",
                    "the server may speak plain http: try http://, or fix its certificate",
                ) from None
            raise ServerUnavailable(
                f"Passkey unavailable: cannot reach {self.server_url} ({type(error).__name__})",
                _REMEDIES[ServerError.SERVER_UNAVAILABLE],
            ) from None
        logger.log(TRAFFIC, "response %s: %s", response.status_code, response.text)
        if self._localhost:
            # Browsers treat http://localhost as a secure context and send it Secure cookies;
            # http.cookiejar would not, so such cookies are kept as plain ones.
            for cookie in self.client.cookies.jar:
                cookie.secure = False
        try:
            answer = response.json()
        except ValueError:
            answer = None
        status = response.status_code
        if status >= 300 or answer is None:
            raise server_error(self.profile, status, answer, finish, status_map)
        return answer

    def cookie(self, name: str) -> str | None:
        for cookie in self.client.cookies.jar:
            if cookie.name == name:
                return cookie.value
        return None

    def load_cookies(self, path: Path) -> None:
        """Load a Netscape-format cookie jar (a missing file is an empty jar)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as error:
            raise StateError(
                f"cookie jar {path} cannot be read ({type(error).__name__})", "check its permissions"
            ) from None
        for number, line in enumerate(text.splitlines(), start=1):
            http_only = line.startswith("#HttpOnly_")
            if http_only:
                line = line.removeprefix("#HttpOnly_")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 7 or not fields[4].lstrip("-").isdigit():
                raise InvalidInput(
                    f"cookie jar {path} line {number} is not in Netscape format",
                    "give a file written by keyctl --cookie-jar or curl -c",
                )
            domain, subdomains, cookie_path, secure, expires, name, value = fields
            if int(expires) and int(expires) < time.time():
                continue
            if "." not in domain:
                domain += ".local"  # http.cookiejar's name for dot-less hosts (see save_cookies)
            self.client.cookies.jar.set_cookie(
                Cookie(
                    version=0,
                    name=name,
                    value=value,
                    port=None,
                    port_specified=False,
                    domain=domain,
                    domain_specified=subdomains == "TRUE",
                    domain_initial_dot=domain.startswith("."),
                    path=cookie_path,
                    path_specified=True,
                    secure=secure == "TRUE",
                    expires=int(expires) or None,
                    discard=not int(expires),
                    comment=None,
                    comment_url=None,
                    rest={"HttpOnly": ""} if http_only else {},
                )
            )

    def save_cookies(self, path: Path) -> None:
        """Write every cookie as a Netscape-format jar (mode 0600, atomic), readable by ``curl -b``."""
        host = urlsplit(self.server_url).hostname or ""
        lines = ["# Netscape HTTP Cookie File", "# written by keyctl: a live session, keep it secret"]
        for cookie in self.client.cookies.jar:
            domain = cookie.domain
            # http.cookiejar files cookies of dot-less hosts (localhost) under "HOST.local"; curl would not
            # send those back, so write the host the server really has.
            if not cookie.domain_specified and domain == f"{host}.local":
                domain = host
            prefix = "#HttpOnly_" if cookie.has_nonstandard_attr("HttpOnly") else ""
            lines.append(
                "\t".join(
                    (
                        prefix + domain,
                        "TRUE" if cookie.domain_specified else "FALSE",
                        cookie.path,
                        "TRUE" if cookie.secure else "FALSE",
                        str(cookie.expires or 0),
                        cookie.name,
                        cookie.value or "",
                    )
                )
            )
        atomic_write(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
