"""The sign-in policy of the reference server, with no web imports.

Every public method is one SQLite transaction. A refusal is a ``PolicyError`` with a stable code; it
rolls the transaction back, so nothing of the refused request is written, and then runs the error's
``record`` step in a transaction of its own: the audit event, the failed-attempt counter. Ceremony
challenges live in memory (``challenges.py``). All times come from the injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keyctl.fido2_speedups import cache_fido2_class_lookups
from keyctl.server import aaguids, passwords, twofactor
from keyctl.server.challenges import CHALLENGE_TTL, Challenge, Challenges
from keyctl.server.store import Store

logger = logging.getLogger(__name__)
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
RATE_WINDOW = 60.0
INVITE_TTL = 7 * 24 * 3600
IP_REFILL_PERIOD = 24 * 3600  # an IP's failure allowance refills fully over a day
MAX_NAME = 64
LIMIT_MESSAGE = f"Passkey limit reached: at most {MAX_PASSKEYS} passkeys per account, remove one first"
SYNCED_MESSAGE = (
    "Verification failed: this site accepts device-bound passkeys only (a security key or a platform "
    "authenticator), not synced ones"
)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_CODE = re.compile(r"[0-9]{6}")  # not \d: it matches any Unicode digit ("١٢٣٤٥٦")
_KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)

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
        record: Callable[[sqlite3.Connection], None] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.record = record
        self.retry_after = retry_after


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
class SignedIn:
    token: str  # the new session cookie value (never in the JSON body)
    email: str
    method: str  # "totp" | "recovery" | "passkey"
    passkey_prompt: bool
    credential_id: str | None = None
    new_recovery_code: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "verified": True,
            "status": "signed_in",
            "user": {"email": self.email},
            "method": self.method,
            "passkey_prompt": self.passkey_prompt,
        }
        if self.credential_id is not None:
            body["credential_id"] = self.credential_id
        if self.new_recovery_code is not None:
            body["new_recovery_code"] = self.new_recovery_code
        return body


@dataclass(frozen=True)
class PasswordStep:
    token: str
    status: str  # "totp_required" | "totp_enrollment_required"


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True)
class Me:
    email: str
    passkey_prompt: bool
    passkeys: tuple[Passkey, ...]


@dataclass(frozen=True)
class Block:
    ip: str
    email: str
    since: float


@dataclass(frozen=True)
class IpBlock:
    ip: str
    since: float
    until: float  # when enough of the allowance has refilled for one more attempt


@dataclass(frozen=True)
class AuditEvent:
    id: int
    time: float
    event: str
    email: str | None
    ip: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": iso(self.time),
            "event": self.event,
            "email": self.email,
            "ip": self.ip,
            "detail": dict(self.detail),
        }


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _passkey(row: sqlite3.Row) -> Passkey:
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


def _credential_id(text: str) -> bytes:
    try:
        raw = websafe_decode(text)
    except ValueError:
        raise PolicyError("not_found", "no such passkey") from None
    if not raw:
        raise PolicyError("not_found", "no such passkey")
    return raw


class Policy:
    def __init__(self, store: Store, settings: Settings, clock: Clock = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._fido = Fido2Server(
            PublicKeyCredentialRpEntity(name=settings.rp_name, id=settings.rp_id),
            attestation=AttestationConveyancePreference.NONE,
            verify_origin=lambda origin: origin == settings.origin,
        )
        self._fido.timeout = CHALLENGE_TTL * 1000  # type: ignore[assignment]  # fido2 types it as None
        self._challenges = Challenges()
        self._hits: dict[str, deque[float]] = {}
        self._hits_lock = threading.Lock()
        self._hits_swept_at = 0.0
        self._outbox_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------------

    def _run(self, work: Callable[[sqlite3.Connection, float], T]) -> T:
        now = self.clock()
        try:
            with self.store.transaction() as db:
                return work(db, now)
        except PolicyError as error:
            if error.record is not None:
                with self.store.transaction() as db:
                    error.record(db)
            raise

    def _audit(
        self,
        db: sqlite3.Connection,
        event: str,
        email: str | None,
        ip: str | None,
        **detail: Any,
    ) -> None:
        db.execute(
            "INSERT INTO audit (time, event, email, ip, detail) VALUES (?, ?, ?, ?, ?)",
            (self.clock(), event, email, ip, json.dumps(detail, sort_keys=True)),
        )
        logger.info("audit %s email=%s ip=%s %s", event, email, ip, detail)

    def _refuse(
        self, code: str, message: str, event: str, email: str | None, ip: str | None, **detail: Any
    ) -> PolicyError:
        def record(db: sqlite3.Connection) -> None:
            self._audit(db, event, email, ip, reason=code, **detail)

        return PolicyError(code, message, record)

    def check_rate(self, ip: str) -> None:
        """Count one request on an auth endpoint; refuse beyond the per-IP limit per minute."""
        now = self.clock()
        with self._hits_lock:
            if now - self._hits_swept_at > RATE_WINDOW:
                # Forget IPs idle for a whole window, so the table stays as small as the recent traffic.
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - RATE_WINDOW}
                self._hits_swept_at = now
            hits = self._hits.setdefault(ip, deque())
            while hits and hits[0] <= now - RATE_WINDOW:
                hits.popleft()
            if len(hits) >= self.settings.rate_limit:
                retry = max(1, math.ceil(hits[0] + RATE_WINDOW - now))
                raise PolicyError(
                    "rate_limited", f"too many requests: try again in {retry} s", retry_after=retry
                )
            hits.append(now)

    def check_admin(self, bearer: str | None) -> None:
        expected = self.settings.admin_token.encode()
        if not (expected and bearer and hmac.compare_digest(bearer.encode(), expected)):
            raise PolicyError("unauthorized", "the admin API needs 'Authorization: Bearer <admin token>'")

    def _user_by_email(self, db: sqlite3.Connection, email: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        return row

    def _passkeys(self, db: sqlite3.Connection, user_id: int) -> list[sqlite3.Row]:
        return db.execute(
            "SELECT * FROM passkeys WHERE user_id = ? ORDER BY created_at, rowid", (user_id,)
        ).fetchall()

    def _user_view(self, db: sqlite3.Connection, row: sqlite3.Row) -> User:
        return User(
            email=row["email"],
            created_at=row["created_at"],
            totp_enrolled=row["totp_secret"] is not None,
            last_sign_in_at=row["last_sign_in_at"],
            passkeys=tuple(_passkey(p) for p in self._passkeys(db, row["id"])),
        )

    def _new_session(self, db: sqlite3.Connection, user_id: int, stage: str, now: float) -> str:
        token = secrets.token_urlsafe(32)
        db.execute(
            "INSERT INTO sessions (token_hash, user_id, stage, created_at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (_token_hash(token), user_id, stage, now, now),
        )
        return token

    def _session(
        self, db: sqlite3.Connection, token: str | None, stage: str, now: float, enrollment: bool = False
    ) -> sqlite3.Row:
        """The session behind a cookie, in the given stage and not expired (``enrollment``: an admin-issued
        enrollment session is accepted too)."""
        row: sqlite3.Row | None = None
        if token:
            row = db.execute(
                "SELECT s.*, u.email FROM sessions s JOIN users u ON u.id = s.user_id WHERE token_hash = ?",
                (_token_hash(token),),
            ).fetchone()
        if row is None:
            raise PolicyError("not_signed_in", "not signed in")
        if row["stage"] == ACTIVE:
            if now - row["last_seen_at"] > IDLE_TTL or now - row["created_at"] > ABSOLUTE_TTL:
                raise PolicyError("session_expired", "Session expired: sign in again")
        elif now - row["created_at"] > PENDING_TTL:
            raise PolicyError("session_expired", "Session expired: sign in again")
        if row["stage"] != stage and not (enrollment and row["stage"] == PASSKEY_ENROLLMENT):
            if row["stage"] == PASSKEY_ENROLLMENT:
                raise PolicyError("not_signed_in", "an enrollment session can only register a passkey")
            if row["stage"] == TOTP:
                raise PolicyError("totp_required", "enter the code from your authenticator app first")
            if row["stage"] == PASSWORD_CHANGE:
                raise PolicyError(
                    "password_change_required",
                    "choose a new password first: this one is in a list of breached passwords",
                )
            if row["stage"] in (ENROLL, RECOVERY_CONFIRM):
                raise PolicyError("totp_enrollment_required", "finish setting up two-factor authentication")
            raise PolicyError("invalid_request", "already signed in")
        if stage == ACTIVE:
            db.execute("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", (now, row["token_hash"]))
        return row

    def _prompt_due(self, user: sqlite3.Row, passkey_count: int, now: float) -> bool:
        if passkey_count > 0:
            return False
        if user["prompt_snoozed_until"] is not None and now < user["prompt_snoozed_until"]:
            return False
        skipped = user["prompt_skipped_at"]
        return not (
            skipped is not None and now - skipped < SKIP_TTL and user["signins_since_skip"] < SKIP_SIGNINS
        )

    def _complete_signin(
        self, db: sqlite3.Connection, session: sqlite3.Row, method: str, ip: str, now: float, **extra: Any
    ) -> SignedIn:
        """Turn a sign-in in progress into a signed-in session with a fresh token."""
        user_id = session["user_id"]
        db.execute("DELETE FROM sessions WHERE token_hash = ?", (session["token_hash"],))
        db.execute("DELETE FROM failures WHERE ip = ? AND email = ?", (ip, session["email"]))
        db.execute(
            "UPDATE users SET last_sign_in_at = ?, signins_since_skip = signins_since_skip + 1 WHERE id = ?",
            (now, user_id),
        )
        user = db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        token = self._new_session(db, user_id, ACTIVE, now)
        self._audit(db, "signin_ok", session["email"], ip, method=method)
        prompt = self._prompt_due(user, len(self._passkeys(db, user_id)), now)
        return SignedIn(token=token, email=session["email"], method=method, passkey_prompt=prompt, **extra)

    def _failure(self, email: str, ip: str, code: str, message: str, event: str) -> PolicyError:
        """A failed password or 2FA attempt: counted per IP and account, blocking at the limit."""

        def record(db: sqlite3.Connection) -> None:
            now = self.clock()
            self._audit(db, event, email, ip, reason=code)
            db.execute(
                "INSERT INTO failures (ip, email, count) VALUES (?, ?, 1) "
                "ON CONFLICT (ip, email) DO UPDATE SET count = count + 1",
                (ip, email),
            )
            self._spend_ip_allowance(db, ip, now)
            count = db.execute(
                "SELECT count FROM failures WHERE ip = ? AND email = ?", (ip, email)
            ).fetchone()["count"]
            if count < self.settings.max_failures:
                return
            link_token = secrets.token_urlsafe(24)
            db.execute(
                "UPDATE failures SET blocked_since = ?, unblock_hash = ? WHERE ip = ? AND email = ?",
                (now, _token_hash(link_token), ip, email),
            )
            self._audit(db, "signin_blocked", email, ip, failures=count)
            if self._user_by_email(db, email) is not None:
                self._mail(
                    email,
                    "Sign-in blocked after failed attempts",
                    f"{self.settings.origin}/unblock/{link_token}",
                    now,
                )

        return PolicyError(code, message, record)

    def _ip_allowance(self, row: sqlite3.Row | None, now: float) -> float:
        """Failed sign-ins the IP may still make: a bucket of ``ip_max_failures`` refilled over a day."""
        full = float(self.settings.ip_max_failures)
        if row is None:
            return full
        refilled: float = row["allowance"] + (now - row["updated_at"]) * full / IP_REFILL_PERIOD
        return min(full, refilled)

    def _spend_ip_allowance(self, db: sqlite3.Connection, ip: str, now: float) -> None:
        """Suspicious-IP throttling (as Auth0 defines it): failed sign-ins from one IP, whatever the
        accounts, use up its allowance; when it is empty the IP is blocked until it refills or an admin
        lifts the block. Independent of the per-account block and of the request rate limit."""
        row = db.execute("SELECT * FROM ip_failures WHERE ip = ?", (ip,)).fetchone()
        allowance = self._ip_allowance(row, now) - 1
        blocked_since = row["blocked_since"] if row is not None else None
        if allowance < 1 and blocked_since is None:
            blocked_since = now
            self._audit(db, "ip_blocked", None, ip, failures=self.settings.ip_max_failures)
        db.execute(
            "INSERT INTO ip_failures (ip, allowance, updated_at, blocked_since) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (ip) DO UPDATE SET allowance = excluded.allowance, "
            "updated_at = excluded.updated_at, blocked_since = excluded.blocked_since",
            (ip, allowance, now, blocked_since),
        )

    def _ip_block_until(self, row: sqlite3.Row, now: float) -> float:
        missing = 1 - self._ip_allowance(row, now)
        return now + max(0.0, missing) * IP_REFILL_PERIOD / self.settings.ip_max_failures

    def _check_ip_not_blocked(self, db: sqlite3.Connection, ip: str, now: float) -> None:
        row = db.execute("SELECT * FROM ip_failures WHERE ip = ?", (ip,)).fetchone()
        if row is None or row["blocked_since"] is None:
            return
        until = self._ip_block_until(row, now)
        if until <= now:  # refilled enough for another attempt: the block lapses
            db.execute("UPDATE ip_failures SET blocked_since = NULL WHERE ip = ?", (ip,))
            return
        retry = max(1, math.ceil(until - now))

        def record(db: sqlite3.Connection) -> None:
            self._audit(db, "signin_refused_ip_blocked", None, ip)

        raise PolicyError(
            "ip_blocked",
            f"too many failed sign-ins from this address: try again in {math.ceil(retry / 60)} min",
            record,
            retry_after=retry,
        )

    def _check_not_blocked(self, db: sqlite3.Connection, email: str, ip: str) -> None:
        self._check_ip_not_blocked(db, ip, self.clock())
        row = db.execute(
            "SELECT blocked_since FROM failures WHERE ip = ? AND email = ?", (ip, email)
        ).fetchone()
        if row is not None and row["blocked_since"] is not None:
            raise self._refuse(
                "blocked",
                "sign-in blocked after too many failed attempts: use the unblock link sent to you",
                "signin_refused_blocked",
                email,
                ip,
            )

    def _mail(self, to: str, subject: str, link: str, now: float) -> None:
        line = json.dumps({"time": iso(now), "to": to, "subject": subject, "link": link})
        with self._outbox_lock:
            self.settings.outbox.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # 0600: the links in it let whoever reads them set a password or lift a block.
            fd = os.open(self.settings.outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line + "\n")

    # -- accounts --------------------------------------------------------------------------------------

    def create_user(self, email: str, password: str, ip: str | None = None) -> User:
        email = normalize_email(email)
        weak = passwords.weakness(password)
        if weak is not None:
            raise PolicyError("weak_password", weak)
        hashed = passwords.hash_password(password)

        def work(db: sqlite3.Connection, now: float) -> User:
            if self._user_by_email(db, email) is not None:
                raise PolicyError("user_exists", f"an account for {email} already exists")
            db.execute(
                "INSERT INTO users (email, password_hash, user_handle, created_at) VALUES (?, ?, ?, ?)",
                (email, hashed, secrets.token_bytes(32), now),
            )
            self._audit(db, "user_created", email, ip)
            row = self._user_by_email(db, email)
            assert row is not None
            return self._user_view(db, row)

        return self._run(work)

    def invite(self, email: str) -> tuple[str, float]:
        """An invite link for a new account (also written to the outbox) and when it expires."""
        email = normalize_email(email)
        token = secrets.token_urlsafe(24)
        link = f"{self.settings.origin}/invite/{token}"

        def work(db: sqlite3.Connection, now: float) -> tuple[str, float]:
            if self._user_by_email(db, email) is not None:
                raise PolicyError("user_exists", f"an account for {email} already exists")
            db.execute(
                "INSERT INTO invites (token_hash, email, created_at) VALUES (?, ?, ?)",
                (_token_hash(token), email, now),
            )
            self._audit(db, "invite_created", email, None)
            self._mail(email, "You are invited: choose a password", link, now)
            return link, now + INVITE_TTL

        return self._run(work)

    def accept_invite(self, token: str, password: str, ip: str) -> User:
        weak = passwords.weakness(password)
        if weak is not None:
            raise PolicyError("weak_password", weak)
        hashed = passwords.hash_password(password)

        def work(db: sqlite3.Connection, now: float) -> User:
            invite = db.execute(
                "SELECT * FROM invites WHERE token_hash = ?", (_token_hash(token),)
            ).fetchone()
            if invite is None or now - invite["created_at"] > INVITE_TTL:
                raise PolicyError(
                    "not_found", "this invite link is unknown, used or expired: ask for a new one"
                )
            email = invite["email"]
            db.execute("DELETE FROM invites WHERE email = ?", (email,))
            if self._user_by_email(db, email) is not None:
                raise PolicyError("user_exists", f"an account for {email} already exists")
            db.execute(
                "INSERT INTO users (email, password_hash, user_handle, created_at) VALUES (?, ?, ?, ?)",
                (email, hashed, secrets.token_bytes(32), now),
            )
            self._audit(db, "user_created", email, ip, by="invite")
            row = self._user_by_email(db, email)
            assert row is not None
            return self._user_view(db, row)

        return self._run(work)

    # -- password and 2FA ------------------------------------------------------------------------------

    def signin_password(self, email: str, password: str, ip: str) -> PasswordStep:
        email = email.strip().lower()
        with self.store.transaction() as db:
            row = self._user_by_email(db, email)
        # The slow hash runs outside the lock, and as slowly for an unknown email as for a wrong password.
        ok = passwords.verify_password(password, row["password_hash"] if row else passwords.dummy_hash())
        breached = ok and passwords.breached(password)

        def work(db: sqlite3.Connection, now: float) -> PasswordStep:
            self._check_not_blocked(db, email, ip)
            # Re-read: an admin may have reset 2FA (or a password change landed) during the slow hash.
            current = self._user_by_email(db, email)
            if row is None or not ok or current is None or current["password_hash"] != row["password_hash"]:
                raise self._failure(
                    email, ip, "invalid_credentials", "Incorrect email or password", "signin_failed"
                )
            if breached:
                token = self._new_session(db, current["id"], PASSWORD_CHANGE, now)
                self._audit(db, "signin_password_breached", email, ip)
                return PasswordStep(token=token, status="password_change_required")
            self._audit(db, "signin_password_ok", email, ip)
            return self._second_factor_step(db, current, now)

        return self._run(work)

    def _second_factor_step(self, db: sqlite3.Connection, user: sqlite3.Row, now: float) -> PasswordStep:
        stage = TOTP if user["totp_secret"] is not None else ENROLL
        token = self._new_session(db, user["id"], stage, now)
        status = "totp_required" if stage == TOTP else "totp_enrollment_required"
        return PasswordStep(token=token, status=status)

    def change_password(self, token: str | None, new_password: str, ip: str) -> PasswordStep:
        """The step after a password sign-in with a breached password: a new password, then the 2FA step.
        The account's other sessions end; this sign-in continues under a new token."""
        weak = passwords.weakness(new_password)
        if weak is not None:
            raise PolicyError("weak_password", weak)
        with self.store.transaction() as db:
            self._session(db, token, PASSWORD_CHANGE, self.clock())  # before spending a slow hash on it
        hashed = passwords.hash_password(new_password)

        def work(db: sqlite3.Connection, now: float) -> PasswordStep:
            session = self._session(db, token, PASSWORD_CHANGE, now)
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, session["user_id"]))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (session["user_id"],))
            self._audit(db, "password_changed", session["email"], ip, reason="breached")
            user = db.execute("SELECT * FROM users WHERE id = ?", (session["user_id"],)).fetchone()
            return self._second_factor_step(db, user, now)

        return self._run(work)

    def _check_still_unenrolled(self, db: sqlite3.Connection, session: sqlite3.Row) -> None:
        """An enrollment step of a sign-in that started before another one finished enrolling must not
        replace the secret and recovery code that sign-in set up."""
        user = db.execute("SELECT totp_secret FROM users WHERE id = ?", (session["user_id"],)).fetchone()
        if user["totp_secret"] is not None:
            raise PolicyError(
                "session_expired",
                "Session expired: two-factor authentication was set up meanwhile; sign in again",
            )

    def totp_enroll(self, token: str | None) -> Enrollment:
        def work(db: sqlite3.Connection, now: float) -> Enrollment:
            session = self._session(db, token, ENROLL, now)
            self._check_still_unenrolled(db, session)
            secret = session["pending_secret"]
            if secret is None:
                secret = twofactor.new_secret()
                db.execute(
                    "UPDATE sessions SET pending_secret = ? WHERE token_hash = ?",
                    (secret, session["token_hash"]),
                )
            uri = twofactor.otpauth_uri(secret, session["email"])
            return Enrollment(secret=secret, otpauth_uri=uri, qr_svg=twofactor.qr_svg(uri))

        return self._run(work)

    def totp_enroll_verify(self, token: str | None, code: str, ip: str) -> str:
        """Check the first code of a new TOTP secret; return the recovery code to confirm."""

        def work(db: sqlite3.Connection, now: float) -> str:
            session = self._session(db, token, ENROLL, now)
            self._check_still_unenrolled(db, session)
            self._check_not_blocked(db, session["email"], ip)
            secret = session["pending_secret"]
            if secret is None:
                raise PolicyError(
                    "invalid_request", "ask for the TOTP secret first (/api/signin/totp/enroll)"
                )
            step = twofactor.matching_step(secret, code, now) if _CODE.fullmatch(code) else None
            if step is None:
                raise self._failure(session["email"], ip, "invalid_code", "Incorrect code", "signin_failed")
            recovery = twofactor.new_recovery_code()
            db.execute(
                "UPDATE sessions SET stage = ?, pending_recovery_hash = ?, pending_step = ? "
                "WHERE token_hash = ?",
                (RECOVERY_CONFIRM, twofactor.recovery_hash(recovery), step, session["token_hash"]),
            )
            return recovery

        return self._run(work)

    def recovery_confirm(self, token: str | None, code: str, ip: str) -> SignedIn:
        def work(db: sqlite3.Connection, now: float) -> SignedIn:
            session = self._session(db, token, RECOVERY_CONFIRM, now)
            self._check_still_unenrolled(db, session)
            if not hmac.compare_digest(twofactor.recovery_hash(code), session["pending_recovery_hash"]):
                raise PolicyError("invalid_code", "that is not the recovery code shown: type it again")
            # The enrollment code's step counts as used, so that code cannot be replayed at the next sign-in.
            db.execute(
                "UPDATE users SET totp_secret = ?, totp_last_step = ?, recovery_hash = ? WHERE id = ?",
                (
                    session["pending_secret"],
                    session["pending_step"],
                    session["pending_recovery_hash"],
                    session["user_id"],
                ),
            )
            self._audit(db, "totp_enrolled", session["email"], ip)
            return self._complete_signin(db, session, "totp", ip, now)

        return self._run(work)

    def _enrolled_user(self, db: sqlite3.Connection, session: sqlite3.Row) -> sqlite3.Row:
        """The account of a 2FA step, read in the step's transaction; an admin reset since the password
        step leaves it without a secret: that sign-in must start over (and enroll)."""
        user: sqlite3.Row = db.execute("SELECT * FROM users WHERE id = ?", (session["user_id"],)).fetchone()
        if user["totp_secret"] is None or user["recovery_hash"] is None:
            raise PolicyError(
                "session_expired", "Session expired: two-factor authentication was reset; sign in again"
            )
        return user

    def signin_totp(self, token: str | None, code: str, ip: str) -> SignedIn:
        def work(db: sqlite3.Connection, now: float) -> SignedIn:
            session = self._session(db, token, TOTP, now)
            email = session["email"]
            self._check_not_blocked(db, email, ip)
            user = self._enrolled_user(db, session)
            step = twofactor.matching_step(user["totp_secret"], code, now) if _CODE.fullmatch(code) else None
            if step is None:
                raise self._failure(email, ip, "invalid_code", "Incorrect code", "signin_failed")
            if step <= user["totp_last_step"]:
                raise self._failure(
                    email,
                    ip,
                    "invalid_code",
                    "That code was already used: wait for the next one",
                    "signin_failed",
                )
            db.execute("UPDATE users SET totp_last_step = ? WHERE id = ?", (step, user["id"]))
            return self._complete_signin(db, session, "totp", ip, now)

        return self._run(work)

    def signin_recovery(self, token: str | None, code: str, ip: str) -> SignedIn:
        def work(db: sqlite3.Connection, now: float) -> SignedIn:
            session = self._session(db, token, TOTP, now)
            email = session["email"]
            self._check_not_blocked(db, email, ip)
            user = self._enrolled_user(db, session)
            if not hmac.compare_digest(twofactor.recovery_hash(code), user["recovery_hash"]):
                raise self._failure(email, ip, "invalid_code", "Incorrect recovery code", "signin_failed")
            new_code = twofactor.new_recovery_code()
            db.execute(
                "UPDATE users SET recovery_hash = ? WHERE id = ?",
                (twofactor.recovery_hash(new_code), user["id"]),
            )
            self._audit(db, "recovery_code_used", email, ip)
            return self._complete_signin(db, session, "recovery", ip, now, new_recovery_code=new_code)

        return self._run(work)

    def signout(self, token: str | None, ip: str) -> None:
        def work(db: sqlite3.Connection, now: float) -> None:
            if not token:
                raise PolicyError("not_signed_in", "not signed in")
            row = db.execute(
                "SELECT u.email FROM sessions s JOIN users u ON u.id = s.user_id WHERE token_hash = ?",
                (_token_hash(token),),
            ).fetchone()
            if row is None:
                raise PolicyError("not_signed_in", "not signed in")
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
            self._audit(db, "signout", row["email"], ip)

        self._run(work)

    def me(self, token: str | None) -> Me:
        def work(db: sqlite3.Connection, now: float) -> Me:
            session = self._session(db, token, ACTIVE, now)
            user = db.execute("SELECT * FROM users WHERE id = ?", (session["user_id"],)).fetchone()
            passkeys = tuple(_passkey(p) for p in self._passkeys(db, user["id"]))
            return Me(user["email"], self._prompt_due(user, len(passkeys), now), passkeys)

        return self._run(work)

    def passkey_prompt(self, token: str | None, action: str, ip: str) -> None:
        if action not in ("skip", "snooze"):
            raise PolicyError("invalid_request", "action must be 'skip' or 'snooze'")

        def work(db: sqlite3.Connection, now: float) -> None:
            session = self._session(db, token, ACTIVE, now)
            if action == "skip":
                db.execute(
                    "UPDATE users SET prompt_skipped_at = ?, signins_since_skip = 0 WHERE id = ?",
                    (now, session["user_id"]),
                )
            else:
                db.execute(
                    "UPDATE users SET prompt_snoozed_until = ? WHERE id = ?",
                    (now + SNOOZE_TTL, session["user_id"]),
                )
            self._audit(db, f"passkey_prompt_{action}", session["email"], ip)

        self._run(work)

    # -- passkeys --------------------------------------------------------------------------------------

    def _descriptors(self, rows: list[sqlite3.Row]) -> list[PublicKeyCredentialDescriptor]:
        return [
            PublicKeyCredentialDescriptor(
                type=PublicKeyCredentialType.PUBLIC_KEY,
                id=row["credential_id"],
                transports=[
                    AuthenticatorTransport(t) for t in json.loads(row["transports"]) if t in _KNOWN_TRANSPORTS
                ]
                or None,
            )
            for row in rows
        ]

    def _take_challenge(self, value: bytes, kind: str, now: float) -> Challenge:
        """Use up a ceremony's challenge; unknown, used or expired ones are 'Session expired'."""
        challenge = self._challenges.take(value, kind, now)
        if challenge is None:
            raise PolicyError(
                "session_expired",
                "Session expired: the challenge is unknown, already used or older than 5 minutes",
            )
        return challenge

    def register_options(
        self, token: str | None, name: str | None, resident_key: str | None, uv: str | None, ip: str
    ) -> dict[str, Any]:
        name = None if name is None else check_name(name)
        rk = _enum(ResidentKeyRequirement, resident_key, "residentKey", ResidentKeyRequirement.PREFERRED)
        verification = _enum(
            UserVerificationRequirement, uv, "userVerification", UserVerificationRequirement.PREFERRED
        )

        def work(db: sqlite3.Connection, now: float) -> dict[str, Any]:
            session = self._session(db, token, ACTIVE, now, enrollment=True)
            user = db.execute("SELECT * FROM users WHERE id = ?", (session["user_id"],)).fetchone()
            rows = self._passkeys(db, user["id"])
            if len(rows) >= MAX_PASSKEYS:
                raise self._refuse(
                    "passkey_limit",
                    LIMIT_MESSAGE,
                    "passkey_register_refused",
                    user["email"],
                    ip,
                )
            value = os.urandom(32)
            options, _ = self._fido.register_begin(
                PublicKeyCredentialUserEntity(
                    name=user["email"], id=user["user_handle"], display_name=user["email"]
                ),
                credentials=self._descriptors(rows),
                resident_key_requirement=rk,
                user_verification=verification,
                challenge=value,
            )
            self._challenges.add(
                Challenge(
                    value=value,
                    kind="register",
                    created_at=now,
                    user_verification=verification.value,
                    user_id=user["id"],
                    session_hash=session["token_hash"],
                    name=name,
                )
            )
            return dict(options.public_key)

        return self._run(work)

    def register_verify(self, token: str | None, body: Mapping[str, Any], ip: str) -> tuple[str, Passkey]:
        registration = _parse(RegistrationResponse, body)
        transports = _transports(body)

        def work(db: sqlite3.Connection, now: float) -> tuple[str, Passkey]:
            session = self._session(db, token, ACTIVE, now, enrollment=True)
            email = session["email"]
            challenge = self._take_challenge(registration.response.client_data.challenge, "register", now)
            if challenge.session_hash != session["token_hash"]:
                raise PolicyError(
                    "session_expired", "Session expired: this challenge was issued to another session"
                )
            state = {
                "challenge": websafe_encode(challenge.value),
                "user_verification": UserVerificationRequirement(challenge.user_verification),
            }
            try:
                if registration.response.attestation_object.auth_data.credential_data is None:
                    raise ValueError("no attested credential data (the AT flag is not set)")
                auth_data = self._fido.register_complete(state, registration)
                credential = auth_data.credential_data
                assert credential is not None  # checked above
                _check_usable_key(credential.public_key, self._fido.allowed_algorithms)
            except ValueError as error:
                raise self._refuse(
                    "verification_failed",
                    f"Verification failed: {error}",
                    "passkey_register_refused",
                    email,
                    ip,
                ) from None
            if db.execute(
                "SELECT 1 FROM passkeys WHERE credential_id = ?", (credential.credential_id,)
            ).fetchone():
                raise self._refuse(
                    "credential_excluded",
                    "Passkey already registered for this device",
                    "passkey_register_refused",
                    email,
                    ip,
                )
            if self.settings.device_bound_only and auth_data.is_backup_eligible():
                raise self._refuse(
                    "verification_failed",
                    SYNCED_MESSAGE,
                    "passkey_register_refused",
                    email,
                    ip,
                    policy="device_bound_only",
                    aaguid=str(credential.aaguid),
                )
            rows = self._passkeys(db, session["user_id"])
            if len(rows) >= MAX_PASSKEYS:
                raise self._refuse(
                    "passkey_limit",
                    LIMIT_MESSAGE,
                    "passkey_register_refused",
                    email,
                    ip,
                )
            aaguid = str(credential.aaguid)
            name = challenge.name or aaguids.model_name(aaguid) or _next_default_name(rows)
            db.execute(
                "INSERT INTO passkeys (credential_id, user_id, name, credential_data, aaguid, transports, "
                "backup_eligible, backed_up, sign_count, created_at, attestation_format) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    credential.credential_id,
                    session["user_id"],
                    name,
                    bytes(credential),
                    aaguid,
                    json.dumps(transports),
                    auth_data.is_backup_eligible(),
                    auth_data.is_backed_up(),
                    auth_data.counter,
                    now,
                    registration.response.attestation_object.fmt,
                ),
            )
            credential_id = websafe_encode(credential.credential_id)
            via = {}
            if session["stage"] == PASSKEY_ENROLLMENT:  # single use: the session ends with its passkey
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (session["token_hash"],))
                via = {"via": "enrollment"}
            self._audit(
                db,
                "passkey_registered",
                email,
                ip,
                credential_id=credential_id,
                aaguid=aaguid,
                name=name,
                **via,
            )
            row = db.execute(
                "SELECT * FROM passkeys WHERE credential_id = ?", (credential.credential_id,)
            ).fetchone()
            return email, _passkey(row)

        return self._run(work)

    def list_passkeys(self, token: str | None) -> tuple[Passkey, ...]:
        return self.me(token).passkeys

    def rename_passkey(self, token: str | None, credential_id: str, name: str, ip: str) -> Passkey:
        raw = _credential_id(credential_id)
        name = check_name(name)

        def work(db: sqlite3.Connection, now: float) -> Passkey:
            session = self._session(db, token, ACTIVE, now)
            updated = db.execute(
                "UPDATE passkeys SET name = ? WHERE credential_id = ? AND user_id = ?",
                (name, raw, session["user_id"]),
            ).rowcount
            if not updated:
                raise PolicyError("not_found", "no such passkey")
            self._audit(db, "passkey_renamed", session["email"], ip, credential_id=credential_id, name=name)
            return _passkey(db.execute("SELECT * FROM passkeys WHERE credential_id = ?", (raw,)).fetchone())

        return self._run(work)

    def delete_passkey(self, token: str | None, credential_id: str, ip: str) -> None:
        raw = _credential_id(credential_id)

        def work(db: sqlite3.Connection, now: float) -> None:
            session = self._session(db, token, ACTIVE, now)
            if not db.execute(
                "DELETE FROM passkeys WHERE credential_id = ? AND user_id = ?", (raw, session["user_id"])
            ).rowcount:
                raise PolicyError("not_found", "no such passkey")
            self._audit(db, "passkey_deleted", session["email"], ip, credential_id=credential_id, by="user")

        self._run(work)

    def login_options(self, email: str | None, uv: str | None) -> dict[str, Any]:
        verification = _enum(
            UserVerificationRequirement, uv, "userVerification", UserVerificationRequirement.PREFERRED
        )

        def work(db: sqlite3.Connection, now: float) -> dict[str, Any]:
            user = self._user_by_email(db, email.strip().lower()) if email is not None else None
            rows = self._passkeys(db, user["id"]) if user is not None else []
            value = os.urandom(32)
            options, _ = self._fido.authenticate_begin(
                credentials=self._descriptors(rows), user_verification=verification, challenge=value
            )
            self._challenges.add(
                Challenge(
                    value=value,
                    kind="login",
                    created_at=now,
                    user_verification=verification.value,
                    user_id=user["id"] if user else None,
                    username_first=email is not None,
                )
            )
            return dict(options.public_key)

        return self._run(work)

    def login_verify(self, body: Mapping[str, Any], ip: str) -> SignedIn:
        authentication = _parse(AuthenticationResponse, body)
        credential_id = websafe_encode(authentication.raw_id)

        def work(db: sqlite3.Connection, now: float) -> SignedIn:
            challenge = self._take_challenge(authentication.response.client_data.challenge, "login", now)
            return self._login(db, challenge, authentication, credential_id, ip, now)

        return self._run(work)

    def _login(
        self,
        db: sqlite3.Connection,
        challenge: Challenge,
        authentication: AuthenticationResponse,
        credential_id: str,
        ip: str,
        now: float,
    ) -> SignedIn:
        row = db.execute(
            "SELECT p.*, u.email, u.user_handle FROM passkeys p JOIN users u ON u.id = p.user_id "
            "WHERE credential_id = ?",
            (authentication.raw_id,),
        ).fetchone()
        if row is None or (challenge.username_first and row["user_id"] != challenge.user_id):
            raise self._refuse(
                "unknown_credential",
                "Passkey not found: this passkey is not registered here",
                "passkey_login_failed",
                None,
                ip,
                credential_id=credential_id,
            )
        email = row["email"]
        user_handle = authentication.response.user_handle
        if user_handle is not None and not hmac.compare_digest(user_handle, row["user_handle"]):
            raise self._refuse(
                "verification_failed",
                "Verification failed: user handle does not match the passkey",
                "passkey_login_failed",
                email,
                ip,
                credential_id=credential_id,
            )
        state = {
            "challenge": websafe_encode(challenge.value),
            "user_verification": UserVerificationRequirement(challenge.user_verification),
        }
        try:
            self._fido.authenticate_complete(
                state, [AttestedCredentialData(row["credential_data"])], authentication
            )
        except _UNVERIFIABLE as error:  # ValueError: a bad response; the others: a stored key that is broken
            raise self._refuse(
                "verification_failed",
                f"Verification failed: {error}",
                "passkey_login_failed",
                email,
                ip,
                credential_id=credential_id,
            ) from None
        auth_data = authentication.response.authenticator_data
        if self.settings.device_bound_only and auth_data.is_backup_eligible():
            raise self._refuse(
                "verification_failed",
                SYNCED_MESSAGE,
                "passkey_login_failed",
                email,
                ip,
                credential_id=credential_id,
                policy="device_bound_only",
            )
        stored, counter = row["sign_count"], auth_data.counter
        if (stored or counter) and counter <= stored:
            raise self._refuse(
                "verification_failed",
                "Verification failed: the sign counter went backwards (possible cloned authenticator)",
                "counter_regression",
                email,
                ip,
                credential_id=credential_id,
                stored=stored,
                received=counter,
            )
        db.execute(
            "UPDATE passkeys SET sign_count = ?, last_used_at = ?, backed_up = ? WHERE credential_id = ?",
            (counter, now, auth_data.is_backed_up(), authentication.raw_id),
        )
        # Like a complete password sign-in, a passkey one resets the failed-attempt count; a block stays
        # (the unblock link or an admin lifts it).
        db.execute("DELETE FROM failures WHERE ip = ? AND email = ? AND blocked_since IS NULL", (ip, email))
        db.execute(
            "UPDATE users SET last_sign_in_at = ?, signins_since_skip = signins_since_skip + 1 WHERE id = ?",
            (now, row["user_id"]),
        )
        token = self._new_session(db, row["user_id"], ACTIVE, now)
        self._audit(db, "signin_ok", email, ip, method="passkey", credential_id=credential_id)
        return SignedIn(
            token=token, email=email, method="passkey", passkey_prompt=False, credential_id=credential_id
        )

    # -- unblocking and admin --------------------------------------------------------------------------

    def unblock_link(self, link_token: str) -> None:
        def work(db: sqlite3.Connection, now: float) -> None:
            row = db.execute(
                "SELECT ip, email FROM failures WHERE unblock_hash = ?", (_token_hash(link_token),)
            ).fetchone()
            if row is None:
                raise PolicyError("not_found", "this unblock link is unknown or was already used")
            db.execute("DELETE FROM failures WHERE ip = ? AND email = ?", (row["ip"], row["email"]))
            self._audit(db, "unblocked", row["email"], row["ip"], by="link")

        self._run(work)

    def _admin_user(self, db: sqlite3.Connection, email: str) -> sqlite3.Row:
        row = self._user_by_email(db, email.strip().lower())
        if row is None:
            raise PolicyError("not_found", f"no account {email}")
        return row

    def admin_users(self, limit: int, cursor: int) -> tuple[list[User], int | None]:
        def work(db: sqlite3.Connection, now: float) -> tuple[list[User], int | None]:
            rows = db.execute(
                "SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit + 1)
            ).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            return [self._user_view(db, r) for r in rows], (rows[-1]["id"] if more else None)

        return self._run(work)

    def admin_delete_passkey(self, email: str, credential_id: str) -> None:
        raw = _credential_id(credential_id)

        def work(db: sqlite3.Connection, now: float) -> None:
            user = self._admin_user(db, email)
            if not db.execute(
                "DELETE FROM passkeys WHERE credential_id = ? AND user_id = ?", (raw, user["id"])
            ).rowcount:
                raise PolicyError("not_found", "no such passkey for this account")
            self._audit(db, "passkey_deleted", user["email"], None, credential_id=credential_id, by="admin")

        self._run(work)

    def admin_enrollment(self, email: str, ip: str) -> tuple[str, str, float]:
        """A technician's enrollment session for one account: its token, the account, when it expires.

        It may only ask for registration options and register one passkey (then it ends); it expires like
        a sign-in in progress (PENDING_TTL) and replaces the account's previous enrollment session."""

        def work(db: sqlite3.Connection, now: float) -> tuple[str, str, float]:
            user = self._admin_user(db, email)
            if len(self._passkeys(db, user["id"])) >= MAX_PASSKEYS:
                raise self._refuse(
                    "passkey_limit", LIMIT_MESSAGE, "enrollment_refused", user["email"], ip, by="admin"
                )
            db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND stage = ?", (user["id"], PASSKEY_ENROLLMENT)
            )
            token = self._new_session(db, user["id"], PASSKEY_ENROLLMENT, now)
            self._audit(db, "enrollment_session_created", user["email"], ip, by="admin")
            return token, user["email"], now + PENDING_TTL

        return self._run(work)

    def admin_reset_2fa(self, email: str) -> User:
        def work(db: sqlite3.Connection, now: float) -> User:
            user = self._admin_user(db, email)
            db.execute(
                "UPDATE users SET totp_secret = NULL, totp_last_step = 0, recovery_hash = NULL WHERE id = ?",
                (user["id"],),
            )
            db.execute("DELETE FROM sessions WHERE user_id = ? AND stage != ?", (user["id"], ACTIVE))
            self._audit(db, "totp_reset", user["email"], None, by="admin")
            return self._user_view(db, self._admin_user(db, email))

        return self._run(work)

    def admin_blocks(self) -> list[Block]:
        def work(db: sqlite3.Connection, now: float) -> list[Block]:
            rows = db.execute(
                "SELECT ip, email, blocked_since FROM failures WHERE blocked_since IS NOT NULL "
                "ORDER BY blocked_since"
            ).fetchall()
            return [Block(r["ip"], r["email"], r["blocked_since"]) for r in rows]

        return self._run(work)

    def admin_ip_blocks(self) -> list[IpBlock]:
        def work(db: sqlite3.Connection, now: float) -> list[IpBlock]:
            rows = db.execute(
                "SELECT * FROM ip_failures WHERE blocked_since IS NOT NULL ORDER BY blocked_since"
            ).fetchall()
            blocks = [IpBlock(r["ip"], r["blocked_since"], self._ip_block_until(r, now)) for r in rows]
            return [b for b in blocks if b.until > now]

        return self._run(work)

    def admin_unblock(self, ip: str, email: str | None) -> int:
        def work(db: sqlite3.Connection, now: float) -> int:
            if email is None:
                # All of that IP's blocks: its accounts', and the suspicious-IP block (its allowance refills).
                if db.execute(
                    "DELETE FROM ip_failures WHERE ip = ? AND blocked_since IS NOT NULL", (ip,)
                ).rowcount:
                    self._audit(db, "ip_unblocked", None, ip, by="admin")
                count = db.execute(
                    "DELETE FROM failures WHERE ip = ? AND blocked_since IS NOT NULL", (ip,)
                ).rowcount
            else:
                count = db.execute(
                    "DELETE FROM failures WHERE ip = ? AND email = ? AND blocked_since IS NOT NULL",
                    (ip, email.strip().lower()),
                ).rowcount
            if count:
                self._audit(db, "unblocked", email, ip, by="admin", blocks=count)
            return count

        return self._run(work)

    def admin_audit(self, after: int, limit: int) -> tuple[list[AuditEvent], int | None]:
        def work(db: sqlite3.Connection, now: float) -> tuple[list[AuditEvent], int | None]:
            rows = db.execute(
                "SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1)
            ).fetchall()
            more = len(rows) > limit
            events = [
                AuditEvent(r["id"], r["time"], r["event"], r["email"], r["ip"], json.loads(r["detail"]))
                for r in rows[:limit]
            ]
            return events, (events[-1].id if more else None)

        return self._run(work)

    def cleanup(self) -> None:
        """Forget expired sessions (at start-up)."""

        def work(db: sqlite3.Connection, now: float) -> None:
            db.execute("DELETE FROM sessions WHERE created_at < ?", (now - ABSOLUTE_TTL,))

        self._run(work)


# What verifying with a stored key raises besides ValueError when the key cannot verify anything (an
# unsupported algorithm, missing coordinates): registered before the server refused such keys.
_UNVERIFIABLE = (ValueError, KeyError, TypeError, NotImplementedError)


def _check_usable_key(key: CoseKey, allowed: Sequence[PublicKeyCredentialParameters]) -> None:
    """Refuse (ValueError) a public key that could never verify a login: an algorithm the server did not
    offer, or a key fido2 cannot use (missing or malformed coordinates, a point off the curve)."""
    algorithm = key.get(3)
    if algorithm not in {p.alg for p in allowed}:
        raise ValueError(f"the credential's algorithm {algorithm!r} was not offered")
    try:
        key.verify(b"keyctl key check", b"\0" * 8)  # a usable key rejects the signature, nothing else
    except InvalidSignature:
        return
    except _UNVERIFIABLE as error:
        raise ValueError(f"the credential's public key is unusable ({type(error).__name__})") from None
    raise ValueError("the credential's public key accepts any signature")


def _enum(kind: type[E], value: str | None, key: str, default: E) -> E:
    if value is None:
        return default
    allowed = [e.value for e in kind]
    if value not in allowed:  # fido2's enums map unknown strings to a default instead of refusing them
        raise PolicyError("invalid_request", f"{key} must be one of {', '.join(allowed)}")
    return kind(value)


def _parse(kind: type[R], body: Mapping[str, Any]) -> R:
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


def _transports(body: Mapping[str, Any]) -> list[str]:
    response = body.get("response")
    value = response.get("transports", []) if isinstance(response, dict) else []
    if not (
        isinstance(value, list)
        and len(value) <= 8
        and all(isinstance(t, str) and 0 < len(t) <= 16 for t in value)
    ):
        raise PolicyError("invalid_request", "response.transports must be a list of transport names")
    return list(dict.fromkeys(value))


def _next_default_name(rows: list[sqlite3.Row]) -> str:
    taken = {row["name"] for row in rows}
    number = len(rows) + 1
    while f"Passkey {number}" in taken:
        number += 1
    return f"Passkey {number}"
