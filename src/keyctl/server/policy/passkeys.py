"""Passkeys: registration (options, verify, at most 5 per account, device-bound-only policy), the
account's list (rename, delete), and passkey sign-in (options, verify, sign counter). A ceremony's
challenge is in the database (``storage/state.py``): any instance may complete a ceremony another began,
and one response uses it up, whatever the outcome."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from fido2.utils import websafe_encode
from fido2.webauthn import (
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keyctl.server import aaguids
from keyctl.server.challenges import Challenge
from keyctl.server.policy import prompt, sessions
from keyctl.server.policy.core import (
    ACTIVE,
    KNOWN_TRANSPORTS,
    LIMIT_MESSAGE,
    MAX_PASSKEYS,
    PASSKEY_ENROLLMENT,
    SYNCED_MESSAGE,
    UNVERIFIABLE,
    Context,
    Expiry,
    Passkey,
    PolicyError,
    SignedIn,
    check_name,
    check_usable_key,
    credential_id_bytes,
    enum_value,
    next_default_name,
    parse_response,
    passkey_view,
    transports_of,
)
from keyctl.server.storage import Row, Tx


def _descriptors(rows: list[Row]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            type=PublicKeyCredentialType.PUBLIC_KEY,
            id=row["credential_id"],
            transports=[
                AuthenticatorTransport(t) for t in json.loads(row["transports"]) if t in KNOWN_TRANSPORTS
            ]
            or None,
        )
        for row in rows
    ]


def _take_challenge(ctx: Context, db: Tx, value: bytes, kind: str, now: float) -> Challenge:
    """Use up a ceremony's challenge in this unit of work; unknown, used or expired ones are 'Session
    expired' (and used up too)."""
    challenge = ctx.challenges.take_in(db, value, kind, now)
    if challenge is None:
        raise PolicyError(
            "session_expired",
            "Session expired: the challenge is unknown, already used or older than 5 minutes",
        )
    return challenge


def _spending(ctx: Context, value: bytes, error: PolicyError) -> PolicyError:
    """A refusal after the challenge was taken: the rollback puts it back, so the refusal's record step
    uses it up again (a failed response cannot be retried with the same challenge)."""
    error.also_record(lambda db: ctx.challenges.discard(db, value))
    return error


def register_options(
    ctx: Context, token: str | None, name: str | None, resident_key: str | None, uv: str | None, ip: str
) -> dict[str, Any]:
    name = None if name is None else check_name(name)
    rk = enum_value(ResidentKeyRequirement, resident_key, "residentKey", ResidentKeyRequirement.PREFERRED)
    verification = enum_value(
        UserVerificationRequirement, uv, "userVerification", UserVerificationRequirement.PREFERRED
    )

    def work(db: Tx, now: float) -> dict[str, Any]:
        session = sessions.session(db, token, ACTIVE, now, enrollment=True)
        sessions.require_step_up(ctx, session, "add_passkey", ip, now)
        user = ctx.user_by_id(db, session["user_id"])
        rows = ctx.passkey_rows(db, user["id"])
        if len(rows) >= MAX_PASSKEYS:
            raise ctx.refuse("passkey_limit", LIMIT_MESSAGE, "passkey_register_refused", user["email"], ip)
        value = os.urandom(32)
        options, _ = ctx.fido.register_begin(
            PublicKeyCredentialUserEntity(
                name=user["email"], id=user["user_handle"], display_name=user["email"]
            ),
            credentials=_descriptors(rows),
            resident_key_requirement=rk,
            user_verification=verification,
            challenge=value,
        )
        ctx.challenges.add(
            db,
            Challenge(
                value=value,
                kind="register",
                created_at=now,
                user_verification=verification.value,
                user_id=user["id"],
                session_hash=session["token_hash"],
                name=name,
            ),
        )
        return dict(options.public_key)

    return ctx.run(work)


def register_verify(ctx: Context, token: str | None, body: Mapping[str, Any], ip: str) -> tuple[str, Passkey]:
    registration = parse_response(RegistrationResponse, body)
    transports = transports_of(body)
    value = registration.response.client_data.challenge

    def work(db: Tx, now: float) -> tuple[str, Passkey]:
        session = sessions.session(db, token, ACTIVE, now, enrollment=True)
        challenge = _take_challenge(ctx, db, value, "register", now)
        try:
            return _register(ctx, db, session, challenge, registration, transports, ip, now)
        except PolicyError as error:
            raise _spending(ctx, value, error) from None

    return ctx.run(work)


def _register(
    ctx: Context,
    db: Tx,
    session: Row,
    challenge: Challenge,
    registration: RegistrationResponse,
    transports: list[str],
    ip: str,
    now: float,
) -> tuple[str, Passkey]:
    email = session["email"]
    if challenge.session_hash != session["token_hash"]:
        raise PolicyError("session_expired", "Session expired: this challenge was issued to another session")
    state = {
        "challenge": websafe_encode(challenge.value),
        "user_verification": UserVerificationRequirement(challenge.user_verification),
    }
    try:
        if registration.response.attestation_object.auth_data.credential_data is None:
            raise ValueError("no attested credential data (the AT flag is not set)")
        auth_data = ctx.fido.register_complete(state, registration)
        credential = auth_data.credential_data
        assert credential is not None  # checked above
        check_usable_key(credential.public_key, ctx.fido.allowed_algorithms)
    except ValueError as error:
        raise ctx.refuse(
            "verification_failed", f"Verification failed: {error}", "passkey_register_refused", email, ip
        ) from None
    if db.one("SELECT 1 AS found FROM passkeys WHERE credential_id = ?", (credential.credential_id,)):
        raise ctx.refuse(
            "credential_excluded",
            "Passkey already registered for this device",
            "passkey_register_refused",
            email,
            ip,
        )
    if ctx.settings.device_bound_only and auth_data.is_backup_eligible():
        raise ctx.refuse(
            "verification_failed",
            SYNCED_MESSAGE,
            "passkey_register_refused",
            email,
            ip,
            policy="device_bound_only",
            aaguid=str(credential.aaguid),
        )
    rows = ctx.passkey_rows(db, session["user_id"])
    if len(rows) >= MAX_PASSKEYS:
        raise ctx.refuse("passkey_limit", LIMIT_MESSAGE, "passkey_register_refused", email, ip)
    aaguid = str(credential.aaguid)
    name = challenge.name or aaguids.model_name(aaguid) or next_default_name(rows)
    db.execute(
        "INSERT INTO passkeys (credential_id, user_id, name, credential_data, aaguid, transports, "
        "backup_eligible, backed_up, sign_count, created_at, attestation_format, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM passkeys))",
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
    ctx.audit(
        db, "passkey_registered", email, ip, credential_id=credential_id, aaguid=aaguid, name=name, **via
    )
    row = db.one("SELECT * FROM passkeys WHERE credential_id = ?", (credential.credential_id,))
    assert row is not None
    return email, passkey_view(row)


def list_passkeys(ctx: Context, token: str | None) -> tuple[Passkey, ...]:
    return prompt.me(ctx, token).passkeys


def rename_passkey(ctx: Context, token: str | None, credential_id: str, name: str, ip: str) -> Passkey:
    raw = credential_id_bytes(credential_id)
    name = check_name(name)

    def work(db: Tx, now: float) -> Passkey:
        session = sessions.session(db, token, ACTIVE, now)
        sessions.require_step_up(ctx, session, "rename_passkey", ip, now)
        if not db.execute(
            "UPDATE passkeys SET name = ? WHERE credential_id = ? AND user_id = ?",
            (name, raw, session["user_id"]),
        ):
            raise PolicyError("not_found", "no such passkey")
        ctx.audit(db, "passkey_renamed", session["email"], ip, credential_id=credential_id, name=name)
        row = db.one("SELECT * FROM passkeys WHERE credential_id = ?", (raw,))
        assert row is not None
        return passkey_view(row)

    return ctx.run(work)


def delete_passkey(ctx: Context, token: str | None, credential_id: str, ip: str) -> None:
    raw = credential_id_bytes(credential_id)

    def work(db: Tx, now: float) -> None:
        session = sessions.session(db, token, ACTIVE, now)
        sessions.require_step_up(ctx, session, "delete_passkey", ip, now)
        if not db.execute(
            "DELETE FROM passkeys WHERE credential_id = ? AND user_id = ?", (raw, session["user_id"])
        ):
            raise PolicyError("not_found", "no such passkey")
        ctx.audit(db, "passkey_deleted", session["email"], ip, credential_id=credential_id, by="user")

    ctx.run(work)


def login_options(ctx: Context, email: str | None, uv: str | None) -> dict[str, Any]:
    verification = enum_value(
        UserVerificationRequirement, uv, "userVerification", UserVerificationRequirement.PREFERRED
    )

    def work(db: Tx, now: float) -> dict[str, Any]:
        user = ctx.user_by_email(db, email.strip().lower()) if email is not None else None
        rows = ctx.passkey_rows(db, user["id"]) if user is not None else []
        value = os.urandom(32)
        options, _ = ctx.fido.authenticate_begin(
            credentials=_descriptors(rows), user_verification=verification, challenge=value
        )
        ctx.challenges.add(
            db,
            Challenge(
                value=value,
                kind="login",
                created_at=now,
                user_verification=verification.value,
                user_id=user["id"] if user else None,
                username_first=email is not None,
            ),
        )
        return dict(options.public_key)

    return ctx.run(work)


def login_verify(ctx: Context, body: Mapping[str, Any], ip: str) -> SignedIn:
    authentication = parse_response(AuthenticationResponse, body)
    credential_id = websafe_encode(authentication.raw_id)
    value = authentication.response.client_data.challenge

    def work(db: Tx, now: float) -> SignedIn:
        challenge = _take_challenge(ctx, db, value, "login", now)
        try:
            return _login(ctx, db, challenge, authentication, credential_id, ip, now)
        except PolicyError as error:
            raise _spending(ctx, value, error) from None

    return ctx.run(work)


def _login(
    ctx: Context,
    db: Tx,
    challenge: Challenge,
    authentication: AuthenticationResponse,
    credential_id: str,
    ip: str,
    now: float,
) -> SignedIn:
    row = verify_assertion(ctx, db, challenge, authentication, credential_id, ip, now)
    email = row["email"]
    # Like a complete password sign-in, a passkey one resets the failed-attempt count; a block stays
    # (the unblock link or an admin lifts it).
    db.execute("DELETE FROM failures WHERE ip = ? AND email = ? AND blocked_since IS NULL", (ip, email))
    db.execute(
        "UPDATE users SET last_sign_in_at = ?, signins_since_skip = signins_since_skip + 1 WHERE id = ?",
        (now, row["user_id"]),
    )
    token = sessions.new_session(db, row["user_id"], ACTIVE, now)
    ctx.audit(db, "signin_ok", email, ip, method="passkey", credential_id=credential_id)
    return SignedIn(
        token=token,
        email=email,
        method="passkey",
        passkey_prompt=False,
        expiry=Expiry.of(now, now),
        credential_id=credential_id,
    )


def verify_assertion(
    ctx: Context,
    db: Tx,
    challenge: Challenge,
    authentication: AuthenticationResponse,
    credential_id: str,
    ip: str,
    now: float,
) -> Row:
    """Verify an assertion against the stored passkey and record its use (counter, last used); the
    passkey's row with the account's email. A challenge naming a user (username-first) takes only that
    user's passkeys."""
    row = db.one(
        "SELECT p.*, u.email, u.user_handle FROM passkeys p JOIN users u ON u.id = p.user_id "
        "WHERE credential_id = ?",
        (authentication.raw_id,),
    )
    if row is None or (challenge.username_first and row["user_id"] != challenge.user_id):
        raise ctx.refuse(
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
        raise ctx.refuse(
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
        ctx.fido.authenticate_complete(
            state, [AttestedCredentialData(row["credential_data"])], authentication
        )
    except UNVERIFIABLE as error:  # ValueError: a bad response; the others: a stored key that is broken
        raise ctx.refuse(
            "verification_failed",
            f"Verification failed: {error}",
            "passkey_login_failed",
            email,
            ip,
            credential_id=credential_id,
        ) from None
    auth_data = authentication.response.authenticator_data
    if ctx.settings.device_bound_only and auth_data.is_backup_eligible():
        raise ctx.refuse(
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
        raise ctx.refuse(
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
    return row
