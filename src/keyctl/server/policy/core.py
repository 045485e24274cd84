"""What every part of the sign-in policy shares: settings, limits, the refusal type, the views returned to
the web layer, input checks, and the ``Context`` (database, clock, WebAuthn server, shared state, audit
log, outbox) the parts run their units of work in."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticationResponse,
    AuthenticatorTransport,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keyctl.fido2_speedups import cache_fido2_class_lookups
from keyctl.fileio import open_private
from keyctl.server.challenges import CHALLENGE_TTL
from keyctl.server.storage import Database, Row, Tx
from keyctl.server.storage.state import ChallengeStore, RateCounter

logger = logging.getLogger("keyctl.server.policy")
cache_fido2_class_lookups()

Clock = Callable[[], float]
T = TypeVar("T")
E = TypeVar("E", ResidentKeyRequirement, UserVerificationRequirement)
R = TypeVar("R", RegistrationResponse, AuthenticationResponse)

PENDING_TTL = 5 * 60
IDLE_TTL = 24 * 3600
ABSOLUTE_TTL = 7 * 24 * 3600
MAX_PASSKEYS = 5
SKIP_SIGNINS = 10
SKIP_TTL = 7 * 24 * 3600
SNOOZE_TTL = 30 * 24 * 3600
INVITE_TTL = 7 * 24 * 3600
RESET_TTL = 24 * 3600  # a password reset link
STEP_UP_TTL = 5 * 60  # how long a verification allows sensitive actions
IP_REFILL_PERIOD = 24 * 3600  # an IP's failure allowance refills fully over a day
MAX_NAME = 64
LIMIT_MESSAGE = f"Passkey limit reached: at most {MAX_PASSKEYS} passkeys per account, remove one first"
SYNCED_MESSAGE = (
    "Verification failed: this site accepts device-bound passkeys only (a security key or a platform "
    "authenticator), not synced ones"
)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
CODE = re.compile(r"[0-9]{6}")  # not \d: it matches any Unicode digit ("١٢٣٤٥٦")
KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)

# Session stages: a sign-in in progress, then a signed-in session.
ENROLL, RECOVERY_CONFIRM, TOTP, ACTIVE = "enroll", "recovery_confirm", "totp", "active"
# A password sign-in whose password is on the breach list: a new password comes before the 2FA step.
PASSWORD_CHANGE = "password_change"
# A technician's enrollment session (admin API): registers one passkey for one account, nothing else.
PASSKEY_ENROLLMENT = "passkey_enrollment"


class PolicyError(Exception):
    """A refused request: a stable code, a one-line message, and what to record despite the refusal."""

    def __init__(
        self,
        code: str,
        message: str,
        record: Callable[[Tx], None] | None = None,
        retry_after: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.record = record
        self.retry_after = retry_after
        self.extra = extra  # more members of the error body (a CAPTCHA to solve)

    def also_record(self, step: Callable[[Tx], None]) -> None:
        """Add a step to what the refusal records (in the transaction after the rollback)."""
        first = self.record

        def record(db: Tx) -> None:
            if first is not None:
                first(db)
            step(db)

        self.record = record


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Settings:
    rp_id: str
    origin: str
    outbox: Path
    admin_token: str
    rp_name: str = "keyctl"
    max_failures: int = 5
    rate_limit: int = 120  # requests a minute per IP on the auth endpoints
    ip_max_failures: int = 100  # failed sign-ins a day from one IP, any accounts, before the IP is blocked
    device_bound_only: bool = False  # refuse synced (backup-eligible) passkeys at registration and login
    trusted_proxies: tuple[str, ...] = ()  # networks whose X-Forwarded-For names the client (web.py)
    # The admins, as people: they get security alerts (risk blocks) in the outbox, and their accounts step
    # up (TOTP or passkey) for the admin actions that remove an account's protection (policy/step_up.py).
    admin_emails: tuple[str, ...] = ()
    captcha_exempt: tuple[str, ...] = ()  # networks never asked for a CAPTCHA (CI runners)


@dataclass(frozen=True)
class Passkey:
    id: str
    name: str
    created_at: float
    last_used_at: float | None
    aaguid: str
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    sign_count: int
    attestation_format: str | None  # None: registered before the server kept it

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "aaguid": self.aaguid,
            "transports": list(self.transports),
            "backup_eligible": self.backup_eligible,
            "backed_up": self.backed_up,
            "sign_count": self.sign_count,
            "attestation_format": self.attestation_format,
        }


@dataclass(frozen=True)
class User:
    email: str
    created_at: float
    totp_enrolled: bool
    last_sign_in_at: float | None
    passkeys: tuple[Passkey, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "created_at": iso(self.created_at),
            "totp_enrolled": self.totp_enrolled,
            "last_sign_in_at": iso(self.last_sign_in_at),
            "passkeys": [p.as_json() for p in self.passkeys],
        }


@dataclass(frozen=True)
class Expiry:
    """When a signed-in session ends: after IDLE_TTL without a request, and ABSOLUTE_TTL after sign-in."""

    idle_expires_at: float
    absolute_expires_at: float

    @classmethod
    def of(cls, created_at: float, now: float) -> Expiry:
        """The expiry of a session created at ``created_at`` and seen (used) at ``now``."""
        return cls(now + IDLE_TTL, created_at + ABSOLUTE_TTL)

    def as_json(self) -> dict[str, Any]:
        return {
            "idle_expires_at": iso(self.idle_expires_at),
            "absolute_expires_at": iso(self.absolute_expires_at),
        }


@dataclass(frozen=True)
class SignedIn:
    token: str  # the new session cookie value (never in the JSON body)
    email: str
    method: str  # "totp" | "recovery" | "passkey"
    passkey_prompt: bool
    expiry: Expiry
    credential_id: str | None = None
    new_recovery_code: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "verified": True,
            "status": "signed_in",
            "user": {"email": self.email},
            "method": self.method,
            "passkey_prompt": self.passkey_prompt,
            "session": self.expiry.as_json(),
        }
        if self.credential_id is not None:
            body["credential_id"] = self.credential_id
        if self.new_recovery_code is not None:
            body["new_recovery_code"] = self.new_recovery_code
        return body


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def passkey_view(row: Row) -> Passkey:
    return Passkey(
        id=websafe_encode(row["credential_id"]),
        name=row["name"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        aaguid=row["aaguid"],
        transports=tuple(json.loads(row["transports"])),
        backup_eligible=bool(row["backup_eligible"]),
        backed_up=bool(row["backed_up"]),
        sign_count=row["sign_count"],
        attestation_format=row["attestation_format"],
    )


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise PolicyError("invalid_request", "email must look like name@domain")
    return email


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise PolicyError("invalid_request", f"name must be 1 to {MAX_NAME} printable characters")
    return name


def credential_id_bytes(text: str) -> bytes:
    try:
        raw = websafe_decode(text)
    except ValueError:
        raise PolicyError("not_found", "no such passkey") from None
    if not raw:
        raise PolicyError("not_found", "no such passkey")
    return raw


# What verifying with a stored key raises besides ValueError when the key cannot verify anything (an
# unsupported algorithm, missing coordinates): registered before the server refused such keys.
UNVERIFIABLE = (ValueError, KeyError, TypeError, NotImplementedError)


def check_usable_key(key: CoseKey, allowed: Sequence[PublicKeyCredentialParameters]) -> None:
    """Refuse (ValueError) a public key that could never verify a login: an algorithm the server did not
    offer, or a key fido2 cannot use (missing or malformed coordinates, a point off the curve)."""
    algorithm = key.get(3)
    if algorithm not in {p.alg for p in allowed}:
        raise ValueError(f"the credential's algorithm {algorithm!r} was not offered")
    try:
        key.verify(b"keyctl key check", b"\0" * 8)  # a usable key rejects the signature, nothing else
    except InvalidSignature:
        return
    except UNVERIFIABLE as error:
        raise ValueError(f"the credential's public key is unusable ({type(error).__name__})") from None
    raise ValueError("the credential's public key accepts any signature")


def enum_value(kind: type[E], value: str | None, key: str, default: E) -> E:
    if value is None:
        return default
    allowed = [e.value for e in kind]
    if value not in allowed:  # fido2's enums map unknown strings to a default instead of refusing them
        raise PolicyError("invalid_request", f"{key} must be one of {', '.join(allowed)}")
    return kind(value)


def parse_response(kind: type[R], body: Mapping[str, Any]) -> R:
    """A WebAuthn JSON response, or invalid_request naming what is malformed."""
    if body.get("type") != "public-key":  # fido2 turns any unknown type into "public-key"
        raise PolicyError("invalid_request", "type must be 'public-key'")
    try:
        parsed = kind.from_dict(body)
        parsed.response.client_data.challenge  # noqa: B018  (clientDataJSON is parsed lazily: touch it)
    except Exception as error:  # fido2 raises ValueError, KeyError, TypeError, cbor errors...
        raise PolicyError(
            "invalid_request", f"malformed {kind.__name__} ({type(error).__name__}: {error})"[:200]
        ) from None
    return parsed


def transports_of(body: Mapping[str, Any]) -> list[str]:
    response = body.get("response")
    value = response.get("transports", []) if isinstance(response, dict) else []
    if not (
        isinstance(value, list)
        and len(value) <= 8
        and all(isinstance(t, str) and 0 < len(t) <= 16 for t in value)
    ):
        raise PolicyError("invalid_request", "response.transports must be a list of transport names")
    return list(dict.fromkeys(value))


def next_default_name(rows: list[Row]) -> str:
    taken = {row["name"] for row in rows}
    number = len(rows) + 1
    while f"Passkey {number}" in taken:
        number += 1
    return f"Passkey {number}"


class Context:
    """The database and the services every part of the policy works with."""

    def __init__(self, db: Database, settings: Settings, clock: Clock = time.time) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.fido = Fido2Server(
            PublicKeyCredentialRpEntity(name=settings.rp_name, id=settings.rp_id),
            attestation=AttestationConveyancePreference.NONE,
            verify_origin=lambda origin: origin == settings.origin,
        )
        self.fido.timeout = CHALLENGE_TTL * 1000  # type: ignore[assignment]  # fido2 types it as None
        self.challenges = ChallengeStore(db)
        self.rates = RateCounter(db, settings.rate_limit)
        self._outbox_lock = threading.Lock()
        self._mail_queue = threading.local()  # the mail of the unit of work running in this thread

    def run(self, work: Callable[[Tx, float], T]) -> T:
        """One unit of work in one transaction. A refusal rolls it back, then its ``record`` step (audit
        event, failure count, used-up challenge) runs in a transaction of its own."""
        now = self.clock()
        try:
            return self._transaction(lambda db: work(db, now))
        except PolicyError as error:
            if error.record is not None:
                self._transaction(error.record)
            raise

    def _transaction(self, step: Callable[[Tx], T]) -> T:
        """``step`` in one transaction; the mail it queued (``mail``) goes to the outbox once the
        transaction has committed. A transaction run again (a PostgreSQL serialization conflict) starts
        with an empty queue, so each line is written once; one rolled back writes none; a process dying
        between the commit and the write loses the line (the user asks for a new link)."""
        queued: list[str] = []

        def attempt(db: Tx) -> T:
            queued.clear()
            self._mail_queue.lines = queued
            try:
                return step(db)
            finally:
                self._mail_queue.lines = None

        result = self.db.run(attempt)
        if queued:
            self._write_outbox(queued)
        return result

    def audit(self, db: Tx, event: str, email: str | None, ip: str | None, **detail: Any) -> None:
        db.execute(
            "INSERT INTO audit (time, event, email, ip, detail) VALUES (?, ?, ?, ?, ?)",
            (self.clock(), event, email, ip, json.dumps(detail, sort_keys=True)),
        )
        logger.info("audit %s email=%s ip=%s %s", event, email, ip, detail)

    def refuse(
        self, code: str, message: str, event: str, email: str | None, ip: str | None, **detail: Any
    ) -> PolicyError:
        """A refusal recorded in the audit log."""

        def record(db: Tx) -> None:
            self.audit(db, event, email, ip, reason=code, **detail)

        return PolicyError(code, message, record)

    def mail(self, to: str, subject: str, link: str, now: float) -> None:
        """Queue a mail for the outbox: written when the unit of work calling this commits."""
        queued: list[str] | None = getattr(self._mail_queue, "lines", None)
        if queued is None:
            raise RuntimeError("Context.mail is for units of work run by Context.run")
        queued.append(json.dumps({"time": iso(now), "to": to, "subject": subject, "link": link}))

    def _write_outbox(self, lines: list[str]) -> None:
        with self._outbox_lock:
            self.settings.outbox.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # 0600: the links in it let whoever reads them set a password or lift a block.
            fd = open_private(self.settings.outbox, os.O_WRONLY | os.O_APPEND)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write("".join(line + "\n" for line in lines))

    def user_by_email(self, db: Tx, email: str) -> Row | None:
        return db.one("SELECT * FROM users WHERE email = ?", (email,))

    def user_by_id(self, db: Tx, user_id: int) -> Row:
        row = db.one("SELECT * FROM users WHERE id = ?", (user_id,))
        assert row is not None  # sessions and passkeys are deleted with their account
        return row

    def passkey_rows(self, db: Tx, user_id: int) -> list[Row]:
        return db.all("SELECT * FROM passkeys WHERE user_id = ? ORDER BY created_at, seq", (user_id,))

    def user_view(self, db: Tx, row: Row) -> User:
        return User(
            email=row["email"],
            created_at=row["created_at"],
            totp_enrolled=row["totp_secret"] is not None,
            last_sign_in_at=row["last_sign_in_at"],
            passkeys=tuple(passkey_view(p) for p in self.passkey_rows(db, row["id"])),
        )
