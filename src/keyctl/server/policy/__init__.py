"""The sign-in policy of the reference server, with no web imports, split by concern:

- ``core``: settings, limits, the refusal type, views, input checks, the ``Context`` every part runs in;
- ``accounts``: accounts and passwords (the password step, breached passwords, password change);
- ``password_reset``: forgotten passwords (reset links, the reset);
- ``step_up``: a fresh verification (TOTP or passkey) for sensitive actions (``sessions.require_step_up``),
  and a named admin's step-up for the admin actions that remove an account's protection;
- ``two_factor``: TOTP enrollment, the TOTP and recovery-code steps, completing a sign-in;
- ``sessions``: session tokens, stages, expiry, sign-out;
- ``passkeys``: registration, the passkey list, passkey sign-in; ``prompt``: the add-a-passkey prompt;
- ``protection``: the per-IP request rate, failed-attempt blocks, suspicious-IP throttling;
- ``bots``: a CAPTCHA for password attempts when one address makes many across accounts;
- ``risk``: password sign-ins from a new address under a risk condition are blocked, admins alerted;
- ``admin``: the admin token, invites, accounts, enrollment sessions, 2FA reset; ``audit``: the log.

Every public operation is one unit of work on the storage port (``keyctl.server.storage``): one
transaction, SQLite or PostgreSQL. A refusal is a ``PolicyError`` with a stable code; it rolls the unit of
work back, so nothing of the refused request is written, and then runs the error's ``record`` step in a
transaction of its own: the audit event, the failed-attempt counter, the used-up challenge. All times come
from the injected clock. ``Policy`` is the one object the web layer talks to.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from keyctl.server.policy import (
    accounts,
    admin,
    audit,
    bots,
    passkeys,
    password_reset,
    prompt,
    protection,
    risk,
    sessions,
    step_up,
    two_factor,
)
from keyctl.server.policy.accounts import PasswordStep
from keyctl.server.policy.admin import Invite
from keyctl.server.policy.audit import AuditEvent
from keyctl.server.policy.core import (
    MAX_PASSKEYS,
    PENDING_TTL,
    SYNCED_MESSAGE,
    Clock,
    Context,
    Passkey,
    PolicyError,
    Settings,
    SignedIn,
    User,
    iso,
)
from keyctl.server.policy.prompt import Me
from keyctl.server.policy.protection import Block, IpBlock
from keyctl.server.policy.risk import RiskBlock
from keyctl.server.policy.step_up import ADMIN_HEADER, AdminStepUp
from keyctl.server.policy.two_factor import Enrollment
from keyctl.server.storage import Database

__all__ = [
    "ADMIN_HEADER",
    "MAX_PASSKEYS",
    "PENDING_TTL",
    "SYNCED_MESSAGE",
    "AdminStepUp",
    "AuditEvent",
    "Block",
    "Clock",
    "Enrollment",
    "Invite",
    "IpBlock",
    "Me",
    "Passkey",
    "PasswordStep",
    "Policy",
    "PolicyError",
    "RiskBlock",
    "Settings",
    "SignedIn",
    "User",
    "iso",
]


class Policy:
    def __init__(self, db: Database, settings: Settings, clock: Clock = time.time) -> None:
        self.ctx = Context(db, settings, clock)
        self.db = db
        self.settings = settings
        self.clock = clock

    def close(self) -> None:
        self.db.close()

    # protection
    def check_rate(self, ip: str) -> None:
        protection.check_rate(self.ctx, ip)

    def unblock_link(self, link_token: str) -> None:
        protection.unblock_link(self.ctx, link_token)

    def admin_blocks(self) -> list[Block]:
        return protection.admin_blocks(self.ctx)

    def admin_ip_blocks(self) -> list[IpBlock]:
        return protection.admin_ip_blocks(self.ctx)

    def admin_unblock(self, ip: str, email: str | None) -> int:
        return protection.admin_unblock(self.ctx, ip, email)

    # accounts and passwords
    def create_user(self, email: str, password: str, ip: str | None = None) -> User:
        return accounts.create_user(self.ctx, email, password, ip)

    def signin_password(self, email: str, password: str, ip: str, user_agent: str = "") -> PasswordStep:
        return accounts.signin_password(self.ctx, email, password, ip, user_agent)

    def change_password(self, token: str | None, new_password: str, ip: str) -> PasswordStep:
        return accounts.change_password(self.ctx, token, new_password, ip)

    def change_own_password(self, token: str | None, new_password: str, ip: str) -> None:
        accounts.change_own_password(self.ctx, token, new_password, ip)

    # step-up for sensitive actions
    def step_up_totp(self, token: str | None, code: str, ip: str) -> float:
        return step_up.with_totp(self.ctx, token, code, ip)

    def step_up_passkey_options(self, token: str | None) -> dict[str, Any]:
        return step_up.passkey_options(self.ctx, token)

    def step_up_passkey_verify(self, token: str | None, body: Mapping[str, Any], ip: str) -> float:
        return step_up.passkey_verify(self.ctx, token, body, ip)

    def admin_step_up_totp(self, email: str, code: str, ip: str) -> AdminStepUp:
        return step_up.admin_with_totp(self.ctx, email, code, ip)

    def admin_step_up_passkey_options(self, email: str) -> dict[str, Any]:
        return step_up.admin_passkey_options(self.ctx, email)

    def admin_step_up_passkey_verify(self, body: Mapping[str, Any], ip: str) -> AdminStepUp:
        return step_up.admin_passkey_verify(self.ctx, body, ip)

    # forgotten passwords
    def request_password_reset(self, email: str, ip: str) -> None:
        password_reset.request_reset(self.ctx, email, ip)

    def reset_password(self, token: str, new_password: str, ip: str) -> str:
        return password_reset.reset_password(self.ctx, token, new_password, ip)

    def admin_password_reset(self, email: str) -> tuple[str, float]:
        return password_reset.admin_reset_link(self.ctx, email)

    # two-factor
    def totp_enroll(self, token: str | None) -> Enrollment:
        return two_factor.totp_enroll(self.ctx, token)

    def totp_enroll_verify(self, token: str | None, code: str, ip: str) -> str:
        return two_factor.totp_enroll_verify(self.ctx, token, code, ip)

    def recovery_confirm(self, token: str | None, code: str, ip: str) -> SignedIn:
        return two_factor.recovery_confirm(self.ctx, token, code, ip)

    def signin_totp(self, token: str | None, code: str, ip: str) -> SignedIn:
        return two_factor.signin_totp(self.ctx, token, code, ip)

    def signin_recovery(self, token: str | None, code: str, ip: str) -> SignedIn:
        return two_factor.signin_recovery(self.ctx, token, code, ip)

    # sessions and the prompt
    def signout(self, token: str | None, ip: str) -> None:
        sessions.signout(self.ctx, token, ip)

    def cleanup(self) -> None:
        sessions.cleanup(self.ctx)

    def me(self, token: str | None) -> Me:
        return prompt.me(self.ctx, token)

    def passkey_prompt(self, token: str | None, action: str, ip: str) -> None:
        prompt.passkey_prompt(self.ctx, token, action, ip)

    # passkeys
    def register_options(
        self, token: str | None, name: str | None, resident_key: str | None, uv: str | None, ip: str
    ) -> dict[str, Any]:
        return passkeys.register_options(self.ctx, token, name, resident_key, uv, ip)

    def register_verify(self, token: str | None, body: Mapping[str, Any], ip: str) -> tuple[str, Passkey]:
        return passkeys.register_verify(self.ctx, token, body, ip)

    def list_passkeys(self, token: str | None) -> tuple[Passkey, ...]:
        return passkeys.list_passkeys(self.ctx, token)

    def rename_passkey(self, token: str | None, credential_id: str, name: str, ip: str) -> Passkey:
        return passkeys.rename_passkey(self.ctx, token, credential_id, name, ip)

    def delete_passkey(self, token: str | None, credential_id: str, ip: str) -> None:
        passkeys.delete_passkey(self.ctx, token, credential_id, ip)

    def login_options(self, email: str | None, uv: str | None) -> dict[str, Any]:
        return passkeys.login_options(self.ctx, email, uv)

    def login_verify(self, body: Mapping[str, Any], ip: str) -> SignedIn:
        return passkeys.login_verify(self.ctx, body, ip)

    # invites and admin
    def check_admin(self, bearer: str | None) -> None:
        admin.check_admin(self.ctx, bearer)

    def invite(self, email: str) -> tuple[str, float]:
        return admin.invite(self.ctx, email)

    def accept_invite(self, token: str, password: str, ip: str) -> User:
        return admin.accept_invite(self.ctx, token, password, ip)

    def admin_users(self, limit: int, cursor: int) -> tuple[list[User], int | None]:
        return admin.admin_users(self.ctx, limit, cursor)

    def admin_delete_user(self, email: str, step_up_token: str | None, ip: str) -> None:
        admin.admin_delete_user(self.ctx, email, step_up_token, ip)

    def admin_invites(self) -> list[Invite]:
        return admin.admin_invites(self.ctx)

    def admin_revoke_invite(self, invite_id: str) -> Invite:
        return admin.admin_revoke_invite(self.ctx, invite_id)

    def admin_rename_passkey(self, email: str, credential_id: str, name: str) -> Passkey:
        return admin.admin_rename_passkey(self.ctx, email, credential_id, name)

    def admin_delete_passkey(
        self, email: str, credential_id: str, step_up_token: str | None, ip: str
    ) -> None:
        admin.admin_delete_passkey(self.ctx, email, credential_id, step_up_token, ip)

    def admin_enrollment(self, email: str, ip: str) -> tuple[str, str, float]:
        return admin.admin_enrollment(self.ctx, email, ip)

    def admin_reset_2fa(self, email: str, step_up_token: str | None, ip: str) -> User:
        return admin.admin_reset_2fa(self.ctx, email, step_up_token, ip)

    def check_captcha(self, ip: str, captcha_id: str | None, answer: str | None) -> None:
        bots.check(self.ctx, ip, captcha_id, answer)

    def admin_risk_blocks(self) -> list[RiskBlock]:
        return risk.admin_risk_blocks(self.ctx)

    # audit
    def admin_audit(self, after: int, limit: int) -> tuple[list[AuditEvent], int | None]:
        return audit.admin_audit(self.ctx, after, limit)
