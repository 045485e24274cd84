"""The thin web layer: JSON in and out, the session cookie, and routing onto the policy.

Each route is a plain function from a parsed ``Call`` to a ``Reply``; one dispatcher reads the body
(at most 64 KiB), checks the Origin header and the per-IP rate limit, runs the policy in a worker thread,
and turns every ``PolicyError`` into ``{"error": code, "message": ...}`` with the status of its code.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from keyctl.server.policy import ADMIN_HEADER, AdminStepUp, Invite, Policy, PolicyError, SignedIn, iso

logger = logging.getLogger(__name__)

COOKIE = "keyctl_session"
MAX_BODY = 64 * 1024
MAX_TEXT = 1024


@dataclass(frozen=True)
class ErrorCode:
    status: int
    when: str  # Markdown, for people: the docs' error table


# Every error code the JSON API answers, its HTTP status and when it is given: the one source of the
# status of each code and of the docs' error table (tests/docs/test_api_docs.py).
ERRORS: dict[str, ErrorCode] = {
    "invalid_request": ErrorCode(
        400,
        "malformed JSON, a missing field, a wrong type, bad base64url, text that is not valid Unicode (a "
        "lone surrogate), malformed HTTP framing (a bad or duplicated `Content-Length`, answered by the "
        "HTTP parser in this same shape, then the connection is closed)",
    ),
    "payload_too_large": ErrorCode(413, "body over 64 KiB"),
    "unsupported_media_type": ErrorCode(
        415, "a POST or PATCH without `Content-Type: application/json` (form, `text/plain`, none)"
    ),
    "request_timeout": ErrorCode(
        408, "the request's head and body did not arrive within 10 s (`start(request_timeout=...)`)"
    ),
    "invalid_credentials": ErrorCode(
        401, "wrong email or password: the same answer whether or not the account exists"
    ),
    "invalid_code": ErrorCode(
        401, "wrong, reused (replayed) or out-of-window TOTP code, or wrong recovery code"
    ),
    "totp_required": ErrorCode(401, "the session has passed the password step but not the 2FA step"),
    "totp_enrollment_required": ErrorCode(
        401, "the session has passed the password step; TOTP must be enrolled first"
    ),
    "password_change_required": ErrorCode(
        401,
        "the password step found the password on the breach list: "
        "`POST /api/signin/password/change` comes first",
    ),
    "not_signed_in": ErrorCode(
        401,
        "no session cookie, or the session was logged out (or, for a sign-in in progress, ended by an "
        "admin's 2FA reset)",
    ),
    "session_expired": ErrorCode(
        401,
        "ceremony challenge unknown, already used or older than 5 minutes; sign-in step older than 5 "
        "minutes; session idle 24 h or older than 7 days; a 2FA step whose account lost its 2FA while "
        "the step ran, or (enrollment) finished enrolling in another sign-in, since the password step",
    ),
    "unauthorized": ErrorCode(401, "admin API without the right `Authorization: Bearer <token>`"),
    "step_up_required": ErrorCode(
        403,
        "a sensitive action (adding, renaming or deleting a passkey, changing the password) in a session "
        "whose last verification (the sign-in, or a step-up with a TOTP code or a passkey) is 5 minutes "
        "old or more: step up (`/api/step-up/*`) and repeat it; or an admin action that removes an "
        "account's protection (reset its 2FA, delete it, delete one of its passkeys) without a named "
        "admin's step-up token less than 5 minutes old in the `Keyctl-Step-Up` header: the body then also "
        'has `"step_up": {"header": "Keyctl-Step-Up", "methods": {"totp": "/api/admin/step-up/totp", '
        '"passkey": "/api/admin/step-up/passkey/options"}, "max_age_seconds": 300}`. Nothing was changed',
    ),
    "risk_blocked": ErrorCode(
        403,
        "risk assessment: a correct password from an address the account never completed a sign-in from, "
        "right after failed sign-ins of the account or from an address that tried many accounts; this "
        "attempt only (sign in with a passkey, or from a known device)",
    ),
    "captcha_required": ErrorCode(
        403,
        (
            "bot detection: the address made 10 password attempts for 3 or more accounts within 10 minutes "
            '(counted from its last solved CAPTCHA); the body also has `"captcha": {"id", "image": '
            '"data:image/png;base64,..."}`: send `captcha_id` and `captcha_answer` with the next `POST '
            "/api/signin/password` (a wrong or old answer gets a new image)"
        ),
    ),
    "blocked": ErrorCode(
        403,
        "too many failed sign-ins from this IP for this account (default 5): blocked until the unblock "
        "link is used or an admin unblocks",
    ),
    "ip_blocked": ErrorCode(
        429,
        "suspicious-IP throttling: too many failed sign-ins from this IP across any accounts (default "
        "100 a day); `Retry-After` says when one more attempt has refilled",
    ),
    "forbidden_origin": ErrorCode(
        403, "a request whose `Origin` header is not the server's origin (CSRF guard)"
    ),
    "not_found": ErrorCode(404, "unknown route, passkey, user, or link"),
    "user_exists": ErrorCode(409, "admin creates an account whose email is taken"),
    "weak_password": ErrorCode(
        400, "shorter than 12 characters, or in the bundled list of common/breached passwords"
    ),
    "passkey_limit": ErrorCode(409, "the user already has 5 passkeys (refused at options and at verify)"),
    "credential_excluded": ErrorCode(
        409,
        '"Passkey already registered for this device": the credential is already registered',
    ),
    "unknown_credential": ErrorCode(
        400, "an assertion for a credential the server does not know (or not of the named user)"
    ),
    "verification_failed": ErrorCode(
        400,
        "a synced (backup-eligible) passkey on a `--device-bound-only` server; the response does not "
        "verify: signature, foreign origin, wrong rpIdHash, wrong type, UP/UV flags, sign counter went "
        "backwards (logged as `counter_regression`); a registration without attested credential data or "
        "whose public key could never verify (an algorithm not offered, missing or malformed coordinates)",
    ),
    "rate_limited": ErrorCode(
        429,
        "more than `--rate-limit` requests a minute from one IP on the auth endpoints (`/api/signin/*`, "
        "`/api/signout`, `/api/passkeys/login/*`, `/api/passkeys/register/*`); `Retry-After` header",
    ),
    "method_not_allowed": ErrorCode(405, "wrong HTTP method"),
    "internal_error": ErrorCode(
        500, "a bug (never expected: the tests send malformed and random input to every endpoint)"
    ),
}
STATUS = {code: error.status for code, error in ERRORS.items()}

_CLEAR = ""  # Reply.session value that clears the cookie


@dataclass(frozen=True)
class Call:
    ip: str
    user_agent: str
    token: str | None
    body: Mapping[str, Any]
    path: Mapping[str, str]
    query: Mapping[str, str]
    step_up: str | None = None  # an admin's step-up token (the Keyctl-Step-Up header)


@dataclass(frozen=True)
class Reply:
    body: Mapping[str, Any]
    status: int = 200
    session: str | None = None  # a new cookie value; _CLEAR removes the cookie


def error_response(error: PolicyError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    body = {"error": error.code, "message": error.message, **(error.extra or {})}
    return JSONResponse(body, status_code=STATUS[error.code], headers=headers)


def text(body: Mapping[str, Any], key: str, max_len: int = MAX_TEXT) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        problem = "is missing" if value is None else "must be a string"
        raise PolicyError("invalid_request", f"'{key}' {problem}")
    if len(value) > max_len:
        raise PolicyError("invalid_request", f"'{key}' is longer than {max_len} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone UTF-16 surrogate ("\ud800"), which JSON allows
            raise PolicyError("invalid_request", f"'{key}' is not valid Unicode text") from None
    return value


def optional_text(body: Mapping[str, Any], key: str, max_len: int = MAX_TEXT) -> str | None:
    return None if body.get(key) is None else text(body, key, max_len)


def number(query: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not low <= int(raw) <= high:
        raise PolicyError("invalid_request", f"'{key}' must be a whole number from {low} to {high}")
    return int(raw)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[[Call], Reply]
    kind: str = "user"  # "auth" (rate limited), "user" (session cookie), "admin" (bearer token)
    # Quick endpoints (a short SQLite transaction, no password hash, QR code or fido2 dataclasses) run on
    # the event loop: the hop to a worker thread cost more than their work. The rest run in worker threads.
    inline: bool = False
    needs_body: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs_body", self.method in ("POST", "PATCH"))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(peer: str, forwarded: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address per-IP limits count: the peer's, unless the peer is a trusted proxy; then the nearest
    address in X-Forwarded-For that is not a trusted proxy. Entries further left were written by the
    client and are ignored (anyone can send the header; only a trusted proxy's last entry is its word)."""
    if not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded for hop in header.split(",")]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # the proxy wrote something that is not an address: count the proxy
    return hops[0] if hops else peer


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def build_app(policy: Policy, secure_cookie: bool) -> Starlette:
    endpoints = Api(policy).endpoints()
    trusted = [ipaddress.ip_network(cidr) for cidr in policy.settings.trusted_proxies]
    routes = [*(_route(policy, e, secure_cookie, trusted) for e in endpoints), *_pages(policy)]

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "method_not_allowed" if exc.status_code == 405 else "not_found"
        message = "method not allowed here" if code == "method_not_allowed" else "no such page or endpoint"
        return error_response(PolicyError(code, message))

    async def crash(request: Request, exc: Exception) -> Response:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": "internal_error", "message": "unexpected server error"},
            status_code=STATUS["internal_error"],
        )

    return Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: crash})


def _route(policy: Policy, endpoint: Endpoint, secure_cookie: bool, trusted: Sequence[Network]) -> Route:
    async def handle(request: Request) -> Response:
        peer = request.client.host if request.client else "unknown"
        ip = client_ip(peer, request.headers.getlist("x-forwarded-for"), trusted)
        try:
            origin = request.headers.get("origin")
            if endpoint.method != "GET" and origin is not None and origin != policy.settings.origin:
                raise PolicyError("forbidden_origin", f"requests from {origin[:100]} are not accepted")
            if endpoint.needs_body:
                _require_json(request)
            if endpoint.kind == "auth":
                await run_in_threadpool(policy.check_rate, ip)  # a database transaction
            if endpoint.kind == "admin":
                authorization = request.headers.get("authorization", "")
                scheme, _, bearer = authorization.partition(" ")
                policy.check_admin(bearer if scheme.lower() == "bearer" else None)
            body = await _json_body(request) if endpoint.needs_body else {}
            call = Call(
                ip=ip,
                user_agent=request.headers.get("user-agent", "")[:200],
                token=request.cookies.get(COOKIE),
                body=body,
                path=dict(request.path_params),
                query=dict(request.query_params),
                step_up=request.headers.get(ADMIN_HEADER),
            )
            reply = (
                endpoint.handler(call) if endpoint.inline else await run_in_threadpool(endpoint.handler, call)
            )
        except PolicyError as error:
            return error_response(error)
        except ClientDisconnect:  # the client hung up mid-body: its problem, and nobody reads an answer
            logger.debug("client %s hung up during %s %s", ip, request.method, request.url.path)
            return Response(status_code=400)
        response = JSONResponse(dict(reply.body), status_code=reply.status)
        if reply.session == _CLEAR:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=secure_cookie)
        elif reply.session is not None:
            response.set_cookie(
                COOKIE, reply.session, path="/", httponly=True, samesite="lax", secure=secure_cookie
            )
        return response

    return Route(endpoint.path, handle, methods=[endpoint.method])


def _require_json(request: Request) -> None:
    """A browser cannot send ``Content-Type: application/json`` to another site without a CORS preflight,
    which this server never grants: with the Origin check, this stops cross-site form posts even from
    browsers that send no Origin header."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise PolicyError(
            "unsupported_media_type", "send the body as JSON, with 'Content-Type: application/json'"
        )


async def _json_body(request: Request) -> Mapping[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise PolicyError("payload_too_large", f"the body is larger than {MAX_BODY} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > MAX_BODY:
            raise PolicyError("payload_too_large", f"the body is larger than {MAX_BODY} bytes")
    if not chunks:
        return {}
    try:
        body = json.loads(chunks)
    except (ValueError, RecursionError):
        raise PolicyError("invalid_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PolicyError("invalid_request", "the body must be a JSON object")
    return body


def _signed_in(result: SignedIn) -> Reply:
    return Reply(result.as_json(), session=result.token)


class Api:
    """One method per endpoint: parse the call's fields, ask the policy, shape the reply."""

    def __init__(self, policy: Policy) -> None:
        self.p = policy

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/api/signin/password", self.signin_password, "auth"),
            Endpoint("POST", "/api/signin/password/change", self.change_password, "auth"),
            Endpoint("POST", "/api/signin/totp/enroll", self.totp_enroll, "auth"),
            Endpoint("POST", "/api/signin/totp/enroll/verify", self.totp_enroll_verify, "auth"),
            Endpoint("POST", "/api/signin/recovery/confirm", self.recovery_confirm, "auth"),
            Endpoint("POST", "/api/signin/totp", self.signin_totp, "auth", inline=True),
            Endpoint("POST", "/api/signin/recovery", self.signin_recovery, "auth", inline=True),
            Endpoint("POST", "/api/invites/accept", self.accept_invite, "auth"),
            Endpoint("POST", "/api/password/forgot", self.forgot_password, "auth"),
            Endpoint("POST", "/api/account/password", self.change_own_password, "auth"),
            Endpoint("POST", "/api/step-up/totp", self.step_up_totp, "auth"),
            Endpoint("POST", "/api/step-up/passkey/options", self.step_up_passkey_options, "auth"),
            Endpoint("POST", "/api/step-up/passkey/verify", self.step_up_passkey_verify, "auth"),
            Endpoint("POST", "/api/password/reset", self.reset_password, "auth"),
            Endpoint("POST", "/api/signout", self.signout, "auth", inline=True),
            Endpoint("GET", "/api/me", self.me, "user", inline=True),
            Endpoint("POST", "/api/passkeys/prompt", self.passkey_prompt),
            Endpoint("POST", "/api/passkeys/register/options", self.register_options, "auth"),
            Endpoint("POST", "/api/passkeys/register/verify", self.register_verify, "auth"),
            Endpoint("GET", "/api/passkeys", self.passkeys, "user", inline=True),
            Endpoint("PATCH", "/api/passkeys/{id}", self.rename_passkey),
            Endpoint("DELETE", "/api/passkeys/{id}", self.delete_passkey),
            Endpoint("POST", "/api/passkeys/login/options", self.login_options, "auth", inline=True),
            Endpoint("POST", "/api/passkeys/login/verify", self.login_verify, "auth", inline=True),
            Endpoint("POST", "/api/admin/step-up/totp", self.admin_step_up_totp, "admin"),
            Endpoint(
                "POST", "/api/admin/step-up/passkey/options", self.admin_step_up_passkey_options, "admin"
            ),
            Endpoint("POST", "/api/admin/step-up/passkey/verify", self.admin_step_up_passkey_verify, "admin"),
            Endpoint("POST", "/api/admin/users", self.admin_create_user, "admin"),
            Endpoint("GET", "/api/admin/users", self.admin_users, "admin"),
            Endpoint("DELETE", "/api/admin/users/{email}", self.admin_delete_user, "admin"),
            Endpoint("POST", "/api/admin/invites", self.admin_invite, "admin"),
            Endpoint("GET", "/api/admin/invites", self.admin_invites, "admin"),
            Endpoint("DELETE", "/api/admin/invites/{id}", self.admin_revoke_invite, "admin"),
            Endpoint("PATCH", "/api/admin/users/{email}/passkeys/{id}", self.admin_rename_passkey, "admin"),
            Endpoint("DELETE", "/api/admin/users/{email}/passkeys/{id}", self.admin_delete_passkey, "admin"),
            Endpoint("POST", "/api/admin/users/{email}/reset-2fa", self.admin_reset_2fa, "admin"),
            Endpoint("POST", "/api/admin/users/{email}/enrollment", self.admin_enrollment, "admin"),
            Endpoint("POST", "/api/admin/users/{email}/password-reset", self.admin_password_reset, "admin"),
            Endpoint("GET", "/api/admin/blocks", self.admin_blocks, "admin"),
            Endpoint("GET", "/api/admin/risk-blocks", self.admin_risk_blocks, "admin"),
            Endpoint("POST", "/api/admin/unblock", self.admin_unblock, "admin"),
            Endpoint("GET", "/api/admin/audit", self.admin_audit, "admin"),
        ]

    # sign-in
    def signin_password(self, c: Call) -> Reply:
        """Request: `{"email", "password", "captcha_id"?, "captcha_answer"?}`

        Response: `{"status": "totp_required"}` or `{"status": "totp_enrollment_required"}`, or `{"status":
        "password_change_required"}` when the password is on the breach list; sets the cookie"""
        self.p.check_captcha(
            c.ip, optional_text(c.body, "captcha_id", 64), optional_text(c.body, "captcha_answer", 32)
        )
        step = self.p.signin_password(
            text(c.body, "email", 320), text(c.body, "password"), c.ip, c.user_agent
        )
        return Reply({"status": step.status}, session=step.token)

    def change_password(self, c: Call) -> Reply:
        """Request: `{"new_password"}` (the password rules below)

        Response: `{"status": "totp_required"}` or `{"status": "totp_enrollment_required"}`; the account's
        other sessions end; sets a new cookie"""
        step = self.p.change_password(c.token, text(c.body, "new_password"), c.ip)
        return Reply({"status": step.status}, session=step.token)

    def totp_enroll(self, c: Call) -> Reply:
        """Request: `{}`

        Response: `{"secret": "<base32, 160 bit>", "otpauth_uri":
        "otpauth://totp/keyctl:EMAIL?secret=...&issuer=keyctl", "qr_svg": "<svg ...>"}` (the same secret until
        enrollment completes)"""
        e = self.p.totp_enroll(c.token)
        return Reply({"secret": e.secret, "otpauth_uri": e.otpauth_uri, "qr_svg": e.qr_svg})

    def totp_enroll_verify(self, c: Call) -> Reply:
        """Request: `{"code": "123456"}`

        Response: `{"status": "recovery_code_confirmation_required", "recovery_code":
        "XXXX-XXXX-XXXX-XXXX"}`"""
        code = self.p.totp_enroll_verify(c.token, text(c.body, "code", 16), c.ip)
        return Reply({"status": "recovery_code_confirmation_required", "recovery_code": code})

    def recovery_confirm(self, c: Call) -> Reply:
        """Request: `{"recovery_code"}` (the one just shown)

        Response: signed-in body"""
        return _signed_in(self.p.recovery_confirm(c.token, text(c.body, "recovery_code", 64), c.ip))

    def signin_totp(self, c: Call) -> Reply:
        """Request: `{"code": "123456"}`

        Response: signed-in body"""
        return _signed_in(self.p.signin_totp(c.token, text(c.body, "code", 16), c.ip))

    def signin_recovery(self, c: Call) -> Reply:
        """Request: `{"recovery_code"}`

        Response: signed-in body plus `"new_recovery_code"` (a used code is replaced)"""
        return _signed_in(self.p.signin_recovery(c.token, text(c.body, "recovery_code", 64), c.ip))

    def accept_invite(self, c: Call) -> Reply:
        """Request: `{"token", "password"}` (the token is the last part of an invite link)

        Response: 201 `{"status": "created", "email"}`; then sign in as above"""
        user = self.p.accept_invite(text(c.body, "token", 64), text(c.body, "password"), c.ip)
        return Reply({"status": "created", "email": user.email}, status=201)

    def change_own_password(self, c: Call) -> Reply:
        """Request: `{"new_password"}` (the password rules below; step-up)

        Response: `{"status": "password_changed"}`; the account's other sessions and reset links end"""
        self.p.change_own_password(c.token, text(c.body, "new_password"), c.ip)
        return Reply({"status": "password_changed"})

    def step_up_totp(self, c: Call) -> Reply:
        """Request: `{"code"}`

        Response: `{"status": "verified", "step_up_expires_at"}` (each code once; a wrong one counts as a
        failed attempt toward the block)"""
        until = self.p.step_up_totp(c.token, text(c.body, "code", 16), c.ip)
        return Reply({"status": "verified", "step_up_expires_at": iso(until)})

    def step_up_passkey_options(self, c: Call) -> Reply:
        """Request: `{}`

        Response: request options for one of the account's passkeys, `userVerification: "required"`
        (`unknown_credential` when it has none)"""
        return Reply(self.p.step_up_passkey_options(c.token))

    def step_up_passkey_verify(self, c: Call) -> Reply:
        """Request: `AuthenticationResponseJSON`

        Response: `{"status": "verified", "step_up_expires_at"}` (the ceremony is bound to the session that
        began it)"""
        until = self.p.step_up_passkey_verify(c.token, c.body, c.ip)
        return Reply({"status": "verified", "step_up_expires_at": iso(until)})

    def forgot_password(self, c: Call) -> Reply:
        """Request: `{"email"}`

        Response: `{"status": "reset_link_sent", "message"}`, the same whether or not the account exists; a
        reset link `ORIGIN/reset/TOKEN` goes to the outbox when it does"""
        self.p.request_password_reset(text(c.body, "email", 320), c.ip)
        return Reply(
            {
                "status": "reset_link_sent",
                "message": "If an account exists for this email, a reset link was sent",
            }
        )

    def reset_password(self, c: Call) -> Reply:
        """Request: `{"token", "new_password"}` (the token is the last part of a reset link; the password
        rules below)

        Response: `{"status": "password_reset", "email"}`; the link and the account's other links are used up,
        every session of the account ends; TOTP, recovery code and passkeys stay"""
        email = self.p.reset_password(text(c.body, "token", 64), text(c.body, "new_password"), c.ip)
        return Reply({"status": "password_reset", "email": email})

    def signout(self, c: Call) -> Reply:
        """Request: `{}`

        Response: `{"status": "signed_out"}`; clears the cookie"""
        self.p.signout(c.token, c.ip)
        return Reply({"status": "signed_out"}, session=_CLEAR)

    def me(self, c: Call) -> Reply:
        """Response: `{"email", "passkey_prompt": bool, "passkeys": [Passkey, ...], "session":
        {"idle_expires_at", "absolute_expires_at", "server_time"}}` (this request moves the idle expiry;
        `server_time` lets a page count down on its own clock)"""
        me = self.p.me(c.token)
        return Reply(
            {
                "email": me.email,
                "passkey_prompt": me.passkey_prompt,
                "passkeys": [k.as_json() for k in me.passkeys],
                "session": {**me.expiry.as_json(), "server_time": iso(me.now)},
            }
        )

    # passkeys
    def passkey_prompt(self, c: Call) -> Reply:
        """Request: `{"action": "skip" | "snooze"}`

        Response: `{"passkey_prompt": false}`"""
        self.p.passkey_prompt(c.token, text(c.body, "action", 16), c.ip)
        return Reply({"passkey_prompt": False})

    def register_options(self, c: Call) -> Reply:
        """Request: `{"name"?: str, "residentKey"?: "required"|"preferred"|"discouraged", "userVerification"?:
        "required"|"preferred"|"discouraged"}`

        Response: `PublicKeyCredentialCreationOptionsJSON` (bare: `rp`, `user`, `challenge`,
        `pubKeyCredParams`, `timeout`, `excludeCredentials` = all the user's passkeys,
        `authenticatorSelection`, `attestation: "none"`)"""
        options = self.p.register_options(
            c.token,
            optional_text(c.body, "name", 256),
            optional_text(c.body, "residentKey", 32),
            optional_text(c.body, "userVerification", 32),
            c.ip,
        )
        return Reply(options)

    def register_verify(self, c: Call) -> Reply:
        """Request: `RegistrationResponseJSON` (bare: `id`, `rawId`, `type`, `response: {clientDataJSON,
        attestationObject, transports?}`, `clientExtensionResults`, `authenticatorAttachment?`)

        Response: `{"verified": true, "status": "registered", "user": {"email"}, "passkey": Passkey}`"""
        email, passkey = self.p.register_verify(c.token, c.body, c.ip)
        body = {
            "verified": True,
            "status": "registered",
            "user": {"email": email},
            "passkey": passkey.as_json(),
        }
        return Reply(body)

    def passkeys(self, c: Call) -> Reply:
        """Response: `{"passkeys": [Passkey, ...]}`"""
        return Reply({"passkeys": [k.as_json() for k in self.p.list_passkeys(c.token)]})

    def rename_passkey(self, c: Call) -> Reply:
        """Request: `{"name"}` (1 to 64 characters)

        Response: `Passkey`"""
        return Reply(self.p.rename_passkey(c.token, c.path["id"], text(c.body, "name", 256), c.ip).as_json())

    def delete_passkey(self, c: Call) -> Reply:
        """Response: `{"status": "deleted"}`"""
        self.p.delete_passkey(c.token, c.path["id"], c.ip)
        return Reply({"status": "deleted"})

    def login_options(self, c: Call) -> Reply:
        """Request: `{"email"?: str, "userVerification"?: ...}`

        Response: `PublicKeyCredentialRequestOptionsJSON` (bare: `challenge`, `rpId`, `timeout`,
        `allowCredentials`, `userVerification`); with `email` (username-first) `allowCredentials` lists that
        user's passkeys (an empty list for an unknown email, the same as for a user without passkeys); without
        it the login is username-less (discoverable credentials)"""
        email = optional_text(c.body, "email", 320)
        return Reply(self.p.login_options(email, optional_text(c.body, "userVerification", 32)))

    def login_verify(self, c: Call) -> Reply:
        """Request: `AuthenticationResponseJSON` (bare: `id`, `rawId`, `type`, `response: {clientDataJSON,
        authenticatorData, signature, userHandle?}`, `clientExtensionResults`)

        Response: signed-in body; sets the cookie"""
        return _signed_in(self.p.login_verify(c.body, c.ip))

    # admin
    def admin_step_up_totp(self, c: Call) -> Reply:
        """Request: `{"email", "code"}` (an `--admin-email` account and its TOTP code)

        Response: `{"status": "verified", "admin", "step_up_token", "header": "Keyctl-Step-Up",
        "step_up_expires_at"}`: the token goes in that header of the admin actions that need a step-up,
        for 5 minutes (`invalid_request` for an email that is not an admin's or has no account here;
        each code once, a wrong one counts as a failed attempt of that account toward its block)"""
        step_up = self.p.admin_step_up_totp(text(c.body, "email", 320), text(c.body, "code", 16), c.ip)
        return _admin_step_up(step_up)

    def admin_step_up_passkey_options(self, c: Call) -> Reply:
        """Request: `{"email"}`

        Response: request options for one of that admin's passkeys, `userVerification: "required"`
        (`unknown_credential` when it has none)"""
        return Reply(self.p.admin_step_up_passkey_options(text(c.body, "email", 320)))

    def admin_step_up_passkey_verify(self, c: Call) -> Reply:
        """Request: `AuthenticationResponseJSON`

        Response: as `POST /api/admin/step-up/totp`"""
        return _admin_step_up(self.p.admin_step_up_passkey_verify(c.body, c.ip))

    def admin_create_user(self, c: Call) -> Reply:
        """Request: `{"email", "password"}`

        Response: 201 `User`"""
        user = self.p.create_user(text(c.body, "email", 320), text(c.body, "password"), c.ip)
        return Reply(user.as_json(), status=201)

    def admin_invite(self, c: Call) -> Reply:
        """Request: `{"email"}`

        Response: 201 `{"invite_url", "expires_at"}` (also written to the outbox)"""
        link, expires = self.p.invite(text(c.body, "email", 320))
        return Reply({"invite_url": link, "expires_at": iso(expires)}, status=201)

    def admin_users(self, c: Call) -> Reply:
        """Query: `?limit=50&cursor=C`

        Response: `{"users": [User, ...], "next_cursor": str | null}` (limit 1..200)"""
        users, cursor = self.p.admin_users(
            number(c.query, "limit", 50, 1, 200), number(c.query, "cursor", 0, 0, 2**62)
        )
        return Reply(
            {"users": [u.as_json() for u in users], "next_cursor": None if cursor is None else str(cursor)}
        )

    def admin_delete_user(self, c: Call) -> Reply:
        """Response: `{"status": "deleted"}`: the account, its passkeys, its sessions (signed in or not) and
        its pending invites; its failed-attempt blocks stay (they exist for unknown emails too). Needs a
        named admin's step-up (the `Keyctl-Step-Up` header)"""
        self.p.admin_delete_user(c.path["email"], c.step_up, c.ip)
        return Reply({"status": "deleted"})

    def admin_invites(self, c: Call) -> Reply:
        """Response: `{"invites": [Invite, ...]}`: the pending ones (not used, not expired), oldest first"""
        return Reply({"invites": [_invite_json(i) for i in self.p.admin_invites()]})

    def admin_revoke_invite(self, c: Call) -> Reply:
        """Response: `{"status": "revoked", "invite": Invite}`; its link stops working (`not_found` for an
        unknown, used, expired or revoked invite)"""
        return Reply({"status": "revoked", "invite": _invite_json(self.p.admin_revoke_invite(c.path["id"]))})

    def admin_rename_passkey(self, c: Call) -> Reply:
        """Request: `{"name"}` (1 to 64 characters)

        Response: `Passkey`"""
        passkey = self.p.admin_rename_passkey(c.path["email"], c.path["id"], text(c.body, "name", 256))
        return Reply(passkey.as_json())

    def admin_delete_passkey(self, c: Call) -> Reply:
        """Response: `{"status": "deleted"}`. Needs a named admin's step-up (the `Keyctl-Step-Up` header)"""
        self.p.admin_delete_passkey(c.path["email"], c.path["id"], c.step_up, c.ip)
        return Reply({"status": "deleted"})

    def admin_reset_2fa(self, c: Call) -> Reply:
        """Request: `{}`

        Response: `User` (TOTP and recovery code removed, passkeys kept; next password sign-in enrolls
        again). Needs a named admin's step-up (the `Keyctl-Step-Up` header)"""
        return Reply(self.p.admin_reset_2fa(c.path["email"], c.step_up, c.ip).as_json())

    def admin_enrollment(self, c: Call) -> Reply:
        """Request: `{}`

        Response: 201 `{"status": "enrollment_session", "user": {"email"}, "expires_at"}`; sets the cookie to
        an enrollment session: it can only register one passkey for that account (then it ends), expires after
        5 minutes, replaces the account's previous one; `passkey_limit` (409) when the account has 5 passkeys
        (`keyctl enroll`, see "Batch enrollment")"""
        token, email, expires = self.p.admin_enrollment(c.path["email"], c.ip)
        body = {"status": "enrollment_session", "user": {"email": email}, "expires_at": iso(expires)}
        return Reply(body, status=201, session=token)

    def admin_password_reset(self, c: Call) -> Reply:
        """Request: `{}`

        Response: 201 `{"reset_url", "expires_at"}` (also sent to the outbox)"""
        link, expires = self.p.admin_password_reset(c.path["email"])
        return Reply({"reset_url": link, "expires_at": iso(expires)}, status=201)

    def admin_blocks(self, c: Call) -> Reply:
        """Response: `{"blocks": [{"ip", "email", "since"}], "ip_blocks": [{"ip", "since", "until"}]}`
        (`ip_blocks`: suspicious-IP throttling, `until` when one attempt has refilled)"""
        blocks = self.p.admin_blocks()
        ip_blocks = self.p.admin_ip_blocks()
        return Reply(
            {
                "blocks": [{"ip": b.ip, "email": b.email, "since": iso(b.since)} for b in blocks],
                "ip_blocks": [{"ip": b.ip, "since": iso(b.since), "until": iso(b.until)} for b in ip_blocks],
            }
        )

    def admin_risk_blocks(self, c: Call) -> Reply:
        """Response: `{"risk_blocks": [{"time", "email", "ip", "user_agent", "reason"}]}` (the last 7 days,
        newest first; `reason`: `new_location_after_failures` or `new_location_many_accounts`)"""
        blocks = [
            {
                "time": iso(b.time),
                "email": b.email,
                "ip": b.ip,
                "user_agent": b.user_agent,
                "reason": b.reason,
            }
            for b in self.p.admin_risk_blocks()
        ]
        return Reply({"risk_blocks": blocks})

    def admin_unblock(self, c: Call) -> Reply:
        """Request: `{"ip", "email"?}`

        Response: `{"unblocked": N}` (without `email`: all of that IP's account blocks, and its suspicious-IP
        block)"""
        count = self.p.admin_unblock(text(c.body, "ip", 64), optional_text(c.body, "email", 320))
        return Reply({"unblocked": count})

    def admin_audit(self, c: Call) -> Reply:
        """Query: `?after=ID&limit=100`

        Response: `{"events": [{"id", "time", "event", "email", "ip", "detail": {...}}], "next_after": int |
        null}`"""
        events, after = self.p.admin_audit(
            number(c.query, "after", 0, 0, 2**62), number(c.query, "limit", 100, 1, 1000)
        )
        return Reply({"events": [e.as_json() for e in events], "next_after": after})


def _admin_step_up(step_up: AdminStepUp) -> Reply:
    return Reply(
        {
            "status": "verified",
            "admin": step_up.email,
            "step_up_token": step_up.token,
            "header": ADMIN_HEADER,
            "step_up_expires_at": iso(step_up.expires_at),
        }
    )


def _invite_json(invite: Invite) -> dict[str, Any]:
    return {
        "id": invite.id,
        "email": invite.email,
        "created_at": iso(invite.created_at),
        "expires_at": iso(invite.expires_at),
    }


def _pages(policy: Policy) -> list[Route]:
    page = (resources.files(__package__) / "page.html").read_text(encoding="utf-8")
    invite_page = (resources.files(__package__) / "invite.html").read_text(encoding="utf-8")
    reset_page = (resources.files(__package__) / "reset.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def invite(request: Request) -> Response:
        return HTMLResponse(invite_page, headers={"Cache-Control": "no-store"})

    async def reset(request: Request) -> Response:
        return HTMLResponse(
            reset_page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    async def unblock(request: Request) -> Response:
        try:
            await run_in_threadpool(policy.unblock_link, request.path_params["token"])
        except PolicyError as error:
            return HTMLResponse(_small_page("Link not valid", error.message), status_code=STATUS[error.code])
        return HTMLResponse(_small_page("Unblocked", "You can sign in again from this address."))

    return [
        Route("/", index, methods=["GET"]),
        Route("/invite/{token}", invite, methods=["GET"]),
        Route("/reset/{token}", reset, methods=["GET"]),
        Route("/unblock/{token}", unblock, methods=["GET"]),
    ]


def _small_page(title: str, message: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1><p>{escape(message)}</p><p><a href='/'>Sign in</a></p></body></html>"
    )
