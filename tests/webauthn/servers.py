"""Small, independent relying parties for the conventions keyctl does not ship, on loopback.

Each follows one public convention (SimpleWebAuthn's example app, python-fido2's example server, the
FIDO conformance server API) and verifies with py_webauthn (the ``webauthn`` package), a library keyctl
does not use, so a passing test means keyctl produced what an independent server accepts.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from webauthn.helpers import exceptions as wa_errors
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

import webauthn

RP_ID = "localhost"


@dataclass
class Credential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    user: str


@dataclass
class State:
    """What a test server remembers: sessions (cookie -> data) and registered credentials."""

    origin: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    credentials: list[Credential] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # "register:USER" / "login:USER", in order


Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def _with_session(
    state: State, cookie_name: str, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        sid = request.cookies.get(cookie_name)
        if sid is None or sid not in state.sessions:
            sid = secrets.token_urlsafe(16)
            state.sessions[sid] = {}
        response = await handler(request, state.sessions[sid])
        response.set_cookie(cookie_name, sid, httponly=True, samesite="lax")
        return response

    return endpoint


def _options(options: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(webauthn.options_to_json(options))
    return parsed


def _find(state: State, raw_id: str) -> Credential | None:
    wanted = webauthn.base64url_to_bytes(raw_id)
    return next((c for c in state.credentials if c.credential_id == wanted), None)


def _verify_registration(state: State, body: Any, challenge: bytes, user: str) -> None:
    verified = webauthn.verify_registration_response(
        credential=body, expected_challenge=challenge, expected_rp_id=RP_ID, expected_origin=state.origin
    )
    state.credentials.append(
        Credential(verified.credential_id, verified.credential_public_key, verified.sign_count, user)
    )
    state.verified.append(f"register:{user}")


def _verify_authentication(state: State, body: Any, challenge: bytes, credential: Credential) -> None:
    verified = webauthn.verify_authentication_response(
        credential=body,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=state.origin,
        credential_public_key=credential.public_key,
        credential_current_sign_count=credential.sign_count,
    )
    credential.sign_count = verified.new_sign_count
    state.verified.append(f"login:{credential.user}")


def simplewebauthn_app(state: State) -> Starlette:
    """SimpleWebAuthn's example app: one logged-in user, challenge in the session, {"verified": ...}."""
    user = f"user@{RP_ID}"

    async def registration_options(request: Request, session: dict[str, Any]) -> Response:
        options = webauthn.generate_registration_options(
            rp_id=RP_ID,
            rp_name="SimpleWebAuthn Example",
            user_name=user,
            user_id=b"internalUserId",
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=c.credential_id) for c in state.credentials
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        session["challenge"] = options.challenge
        return JSONResponse(_options(options))

    async def verify_registration(request: Request, session: dict[str, Any]) -> Response:
        challenge = session.pop("challenge", b"")
        try:
            _verify_registration(state, await request.json(), challenge, user)
        except wa_errors.WebAuthnException as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"verified": True})

    async def authentication_options(request: Request, session: dict[str, Any]) -> Response:
        options = webauthn.generate_authentication_options(
            rp_id=RP_ID,
            allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in state.credentials],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        session["challenge"] = options.challenge
        return JSONResponse(_options(options))

    async def verify_authentication(request: Request, session: dict[str, Any]) -> Response:
        challenge = session.pop("challenge", b"")
        body = await request.json()
        credential = _find(state, body.get("rawId", ""))
        if credential is None:
            return JSONResponse({"error": "Authenticator is not registered with this site"}, status_code=400)
        try:
            _verify_authentication(state, body, challenge, credential)
        except wa_errors.WebAuthnException as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"verified": True})

    cookie = "connect.sid"
    return Starlette(
        routes=[
            Route("/generate-registration-options", _with_session(state, cookie, registration_options)),
            Route(
                "/verify-registration", _with_session(state, cookie, verify_registration), methods=["POST"]
            ),
            Route("/generate-authentication-options", _with_session(state, cookie, authentication_options)),
            Route(
                "/verify-authentication",
                _with_session(state, cookie, verify_authentication),
                methods=["POST"],
            ),
        ]
    )


def _flask_500() -> Response:
    # What Flask sends when a view raises: an HTML page, no JSON.
    return HTMLResponse("<!doctype html><title>500 Internal Server Error</title>", status_code=500)


def fido2_example_app(state: State) -> Starlette:
    """python-fido2's example server: single user, {"publicKey": ...}, {"status": "OK"}, errors as 500."""

    async def register_begin(request: Request, session: dict[str, Any]) -> Response:
        options = webauthn.generate_registration_options(
            rp_id=RP_ID,
            rp_name="Demo server",
            user_name="a_user",
            user_id=b"user_id",
            user_display_name="A. User",
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=c.credential_id) for c in state.credentials
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                user_verification=UserVerificationRequirement.DISCOURAGED
            ),
        )
        session["state"] = options.challenge
        return JSONResponse({"publicKey": _options(options)})

    async def register_complete(request: Request, session: dict[str, Any]) -> Response:
        try:
            _verify_registration(state, await request.json(), session.pop("state", b""), "a_user")
        except wa_errors.WebAuthnException:
            return _flask_500()
        return JSONResponse({"status": "OK"})

    async def authenticate_begin(request: Request, session: dict[str, Any]) -> Response:
        if not state.credentials:
            return HTMLResponse("<!doctype html><title>404 Not Found</title>", status_code=404)
        options = webauthn.generate_authentication_options(
            rp_id=RP_ID,
            allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in state.credentials],
        )
        session["state"] = options.challenge
        return JSONResponse({"publicKey": _options(options)})

    async def authenticate_complete(request: Request, session: dict[str, Any]) -> Response:
        body = await request.json()
        credential = _find(state, body.get("rawId", ""))
        try:
            if credential is None:
                raise wa_errors.InvalidAuthenticationResponse("unknown credential")
            _verify_authentication(state, body, session.pop("state", b""), credential)
        except wa_errors.WebAuthnException:
            return _flask_500()
        return JSONResponse({"status": "OK"})

    cookie = "session"
    return Starlette(
        routes=[
            Route(path, _with_session(state, cookie, handler), methods=["POST"])
            for path, handler in (
                ("/api/register/begin", register_begin),
                ("/api/register/complete", register_complete),
                ("/api/authenticate/begin", authenticate_begin),
                ("/api/authenticate/complete", authenticate_complete),
            )
        ]
    )


def fido_conformance_app(state: State, algorithms: list[COSEAlgorithmIdentifier] | None = None) -> Starlette:
    """The FIDO conformance server API: users by name, {"status": "ok"|"failed", "errorMessage": ...}."""

    def failed(message: str) -> Response:
        return JSONResponse({"status": "failed", "errorMessage": message}, status_code=400)

    async def attestation_options(request: Request, session: dict[str, Any]) -> Response:
        body = await request.json()
        username = body.get("username")
        if not isinstance(username, str) or not username:
            return failed("Missing username field!")
        wanted = body.get("authenticatorSelection") or {}
        options = webauthn.generate_registration_options(
            rp_id=RP_ID,
            rp_name="FIDO conformance test server",
            supported_pub_key_algs=algorithms,
            user_name=username,
            user_display_name=body.get("displayName") or username,
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=c.credential_id)
                for c in state.credentials
                if c.user == username
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement(wanted.get("residentKey", "discouraged")),
                user_verification=UserVerificationRequirement(wanted.get("userVerification", "preferred")),
            ),
        )
        session.update(challenge=options.challenge, username=username)
        return JSONResponse({"status": "ok", "errorMessage": "", **_options(options)})

    async def attestation_result(request: Request, session: dict[str, Any]) -> Response:
        try:
            _verify_registration(
                state, await request.json(), session.pop("challenge", b""), session["username"]
            )
        except (wa_errors.WebAuthnException, KeyError) as error:
            return failed(str(error) or "no registration in progress")
        return JSONResponse({"status": "ok", "errorMessage": ""})

    async def assertion_options(request: Request, session: dict[str, Any]) -> Response:
        body = await request.json()
        username = body.get("username")
        mine = [c for c in state.credentials if username is None or c.user == username]
        if username is not None and not mine:
            return failed(f"User {username} does not exist!")
        options = webauthn.generate_authentication_options(
            rp_id=RP_ID,
            allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in mine]
            if username
            else None,
            user_verification=UserVerificationRequirement(body.get("userVerification", "preferred")),
        )
        session["challenge"] = options.challenge
        return JSONResponse({"status": "ok", "errorMessage": "", **_options(options)})

    async def assertion_result(request: Request, session: dict[str, Any]) -> Response:
        body = await request.json()
        credential = _find(state, body.get("rawId", ""))
        if credential is None:
            return failed("Unknown credential")
        try:
            _verify_authentication(state, body, session.pop("challenge", b""), credential)
        except wa_errors.WebAuthnException as error:
            return failed(str(error))
        return JSONResponse({"status": "ok", "errorMessage": ""})

    cookie = "conformance"
    return Starlette(
        routes=[
            Route(path, _with_session(state, cookie, handler), methods=["POST"])
            for path, handler in (
                ("/attestation/options", attestation_options),
                ("/attestation/result", attestation_result),
                ("/assertion/options", assertion_options),
                ("/assertion/result", assertion_result),
            )
        ]
    )


def phishing_app(state: State) -> Starlette:
    """A look-alike site that relays another site's options (rpId example.com) in the keyctl-free
    conformance convention: a client must refuse before touching any authenticator."""

    async def options(request: Request) -> Response:
        registration = webauthn.generate_registration_options(
            rp_id="example.com", rp_name="Example", user_name="victim@example.com"
        )
        authentication = webauthn.generate_authentication_options(rp_id="example.com")
        chosen = registration if request.url.path.startswith("/attestation") else authentication
        return JSONResponse({"status": "ok", "errorMessage": "", **_options(chosen)})

    async def result(request: Request) -> Response:
        state.verified.append("phished")
        return JSONResponse({"status": "ok", "errorMessage": ""})

    return Starlette(
        routes=[
            Route("/attestation/options", options, methods=["POST"]),
            Route("/assertion/options", options, methods=["POST"]),
            Route("/attestation/result", result, methods=["POST"]),
            Route("/assertion/result", result, methods=["POST"]),
        ]
    )


def html_app(state: State) -> Starlette:
    """A server that answers every ceremony step with an HTML page (a wrong URL, a login wall)."""

    async def page(request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>Welcome</title>")

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "POST"])])


def rsa_only_app(state: State) -> Starlette:
    """A conformance-convention server that accepts RS256 keys only (security keys rarely make them)."""
    return fido_conformance_app(state, [COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256])


APPS: dict[str, Callable[[State], Starlette]] = {
    "simplewebauthn": simplewebauthn_app,
    "fido2-example": fido2_example_app,
    "fido-conformance": fido_conformance_app,
}


@dataclass(frozen=True)
class Running:
    url: str
    state: State


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app_factory: Callable[[State], Starlette]) -> Iterator[Running]:
    """Run a test server under uvicorn on a free loopback port; its URL uses 'localhost'."""
    # IPPROTO_TCP, not 0: otherwise asyncio leaves Nagle on and every response waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    state = State(origin=f"http://localhost:{port}")
    config = uvicorn.Config(app_factory(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield Running(state.origin, state)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
