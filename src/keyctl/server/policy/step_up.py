"""Step-up for sensitive actions: adding, renaming or deleting a passkey and changing the password need a
verification (a TOTP code or a passkey assertion) less than STEP_UP_TTL old in this session. Signing in
is one; ``POST /api/step-up/totp`` or the step-up passkey ceremony renews it. Without one the action is
refused with ``step_up_required`` and changes nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fido2.utils import websafe_encode
from fido2.webauthn import AuthenticationResponse, UserVerificationRequirement

from keyctl.server import twofactor
from keyctl.server.challenges import Challenge
from keyctl.server.policy import protection, sessions
from keyctl.server.policy.core import ACTIVE, CODE, STEP_UP_TTL, Context, PolicyError, parse_response
from keyctl.server.policy.passkeys import _descriptors, _spending, _take_challenge, verify_assertion
from keyctl.server.storage import Row, Tx


def _verified(ctx: Context, db: Tx, session: Row, method: str, ip: str, now: float) -> float:
    db.execute("UPDATE sessions SET verified_at = ? WHERE token_hash = ?", (now, session["token_hash"]))
    ctx.audit(db, "step_up", session["email"], ip, method=method)
    return now + STEP_UP_TTL


def with_totp(ctx: Context, token: str | None, code: str, ip: str) -> float:
    """Step up with a TOTP code (each step once, as at sign-in; a wrong code counts as a failed attempt).
    When the verification expires."""

    def work(db: Tx, now: float) -> float:
        session = sessions.session(db, token, ACTIVE, now)
        email = session["email"]
        protection.check_not_blocked(ctx, db, email, ip)
        user = ctx.user_by_id(db, session["user_id"])
        if user["totp_secret"] is None:
            raise PolicyError(
                "invalid_code", "this account has no authenticator app (2FA was reset): use a passkey"
            )
        step = twofactor.matching_step(user["totp_secret"], code, now) if CODE.fullmatch(code) else None
        if step is None or step <= user["totp_last_step"]:
            message = (
                "Incorrect code" if step is None else "That code was already used: wait for the next one"
            )
            raise protection.failure(ctx, email, ip, "invalid_code", message, "step_up_failed")
        db.execute("UPDATE users SET totp_last_step = ? WHERE id = ?", (step, user["id"]))
        return _verified(ctx, db, session, "totp", ip, now)

    return ctx.run(work)


def passkey_options(ctx: Context, token: str | None) -> dict[str, Any]:
    """Request options for a step-up assertion with one of this account's passkeys (user verification
    required: the passkey stands for the code)."""

    def work(db: Tx, now: float) -> dict[str, Any]:
        session = sessions.session(db, token, ACTIVE, now)
        rows = ctx.passkey_rows(db, session["user_id"])
        if not rows:
            raise PolicyError("unknown_credential", "No passkeys available: step up with a code instead")
        value = os.urandom(32)
        verification = UserVerificationRequirement.REQUIRED
        options, _ = ctx.fido.authenticate_begin(
            credentials=_descriptors(rows), user_verification=verification, challenge=value
        )
        ctx.challenges.add(
            db,
            Challenge(
                value=value,
                kind="step_up",
                created_at=now,
                user_verification=verification.value,
                user_id=session["user_id"],
                username_first=True,  # only this account's passkeys
                session_hash=session["token_hash"],
            ),
        )
        return dict(options.public_key)

    return ctx.run(work)


def passkey_verify(ctx: Context, token: str | None, body: Mapping[str, Any], ip: str) -> float:
    authentication = parse_response(AuthenticationResponse, body)
    credential_id = websafe_encode(authentication.raw_id)
    value = authentication.response.client_data.challenge

    def work(db: Tx, now: float) -> float:
        session = sessions.session(db, token, ACTIVE, now)
        challenge = _take_challenge(ctx, db, value, "step_up", now)
        try:
            if challenge.session_hash != session["token_hash"]:
                raise PolicyError("session_expired", "Session expired: this step-up began in another session")
            verify_assertion(ctx, db, challenge, authentication, credential_id, ip, now)
        except PolicyError as error:
            raise _spending(ctx, value, error) from None
        return _verified(ctx, db, session, "passkey", ip, now)

    return ctx.run(work)
