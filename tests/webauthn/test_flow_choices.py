"""What flows.py decides on the user's behalf, observed through an independent relying party (py_webauthn,
on loopback) and py_webauthn's own parsers: ``--uv`` overrides the server's preference, the account a
registration reports is the server's, user handles at WebAuthn's bounds (1 and 64 bytes) reach the key, and
``--account`` falls back to the display name.
Each test here was proven red under the mutant of flows.py it names (benchmarks/mutation.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Literal

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from webauthn.helpers import (
    parse_attestation_object,
    parse_authenticator_data,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import AuthenticatorSelectionCriteria, ResidentKeyRequirement

import webauthn
from keyctl.hid.inprocess import connect
from keyctl.webauthn import flows, profile
from keyctl.webauthn.session import Session
from tests.webauthn.conftest import authenticator, client
from tests.webauthn.servers import RP_ID, State, serve, simplewebauthn_app


class Recording(Session):
    """A session that keeps the bodies keyctl posts to finish a ceremony."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.finished: list[dict[str, Any]] = []

    def call(self, method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("finish"):
            self.finished.append(dict(body))
        return super().call(method, path, body, *args, **kwargs)


def _uv(authenticator_data: str) -> bool:
    raw = base64.urlsafe_b64decode(authenticator_data + "=" * (-len(authenticator_data) % 4))
    return bool(parse_authenticator_data(raw).flags.uv)


@pytest.mark.parametrize("uv", ["discouraged", "required"])
def test_uv_overrides_the_servers_preference(uv: Literal["discouraged", "required"]) -> None:
    """SimpleWebAuthn's example asks for UV "preferred" and takes no UV from the client: ``--uv`` alone
    decides whether the key verifies the user (mutants: ``request.uv is None`` in register and login)."""
    key = authenticator()
    with serve(simplewebauthn_app) as server:
        session = Recording(server.url, profile.load("simplewebauthn"), server.url)
        with session:
            flows.register(session, client(server.url, lambda: connect(key)), flows.Request(uv=uv))
            flows.login(session, client(server.url, lambda: connect(key)), flows.Request(uv=uv))
        assert server.state.verified == ["register:user@localhost", "login:user@localhost"]
    registered = parse_registration_credential_json(session.finished[0])
    flags = parse_attestation_object(registered.response.attestation_object).auth_data.flags
    assert bool(flags.uv) is (uv == "required")
    assert _uv(session.finished[1]["response"]["authenticatorData"]) is (uv == "required")


def test_a_registration_reports_the_servers_account() -> None:
    """The user is the one logged in to the app, not named by keyctl: the result names the server's
    account (mutant: ``options.user.name and request.user``)."""
    key = authenticator()
    with (
        serve(simplewebauthn_app) as server,
        Session(server.url, profile.load("simplewebauthn"), server.url) as s,
    ):
        result = flows.register(s, client(server.url, lambda: connect(key)), flows.Request())
    assert result.user == "user@localhost"
    assert server.state.verified == ["register:user@localhost"]


def _handle_app(user_id: bytes) -> Callable[[State], Starlette]:
    """SimpleWebAuthn's convention with the given user handle; py_webauthn verifies the response."""

    def app(state: State) -> Starlette:
        challenges: list[bytes] = []

        async def options(request: Request) -> Response:
            made = webauthn.generate_registration_options(
                rp_id=RP_ID, rp_name="Example", user_name="ana", user_id=user_id
            )
            challenges.append(made.challenge)
            return JSONResponse(webauthn.helpers.options_to_json_dict(made))

        async def verify(request: Request) -> Response:
            webauthn.verify_registration_response(
                credential=await request.json(),
                expected_challenge=challenges[-1],
                expected_rp_id=RP_ID,
                expected_origin=state.origin,
            )
            return JSONResponse({"verified": True})

        return Starlette(
            routes=[
                Route("/generate-registration-options", options),
                Route("/verify-registration", verify, methods=["POST"]),
            ]
        )

    return app


@pytest.mark.parametrize("length", [1, 64])
def test_a_user_handle_at_webauthns_bounds_is_registered(length: int) -> None:
    """WebAuthn allows 1 to 64 bytes (and recommends 64 random ones): both ends reach the key and the
    server verifies the passkey (mutants: ``1 < len`` / ``len < 64`` / ``2 <= len``)."""
    key = authenticator()
    user_id = bytes(range(7, 7 + length))
    with (
        serve(_handle_app(user_id)) as server,
        Session(server.url, profile.load("simplewebauthn"), server.url) as s,
    ):
        result = flows.register(s, client(server.url, lambda: connect(key)), flows.Request(resident=True))
    assert result.verified
    assert result.user == "ana"
    with key.store.transaction() as state:
        assert [c.user_id for c in state.credentials] == [user_id]


def _accounts_app(accounts: list[tuple[str, str]]) -> Callable[[State], Starlette]:
    """SimpleWebAuthn's convention, one registration per account (user name, display name) in turn, then
    username-less logins (no allowCredentials member); py_webauthn verifies both."""

    def app(state: State) -> Starlette:
        challenges: list[bytes] = []
        keys: dict[bytes, tuple[bytes, str]] = {}  # credential id -> (public key, user name)
        pending = list(accounts)

        async def register_options(request: Request) -> Response:
            name, display_name = pending.pop(0)
            made = webauthn.generate_registration_options(
                rp_id=RP_ID,
                rp_name="Example",
                user_name=name,
                user_display_name=display_name,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.REQUIRED
                ),
            )
            challenges.append(made.challenge)
            state.sessions[made.challenge.hex()] = {"user": name}
            return JSONResponse(webauthn.helpers.options_to_json_dict(made))

        async def register_verify(request: Request) -> Response:
            challenge = challenges[-1]
            verified = webauthn.verify_registration_response(
                credential=await request.json(),
                expected_challenge=challenge,
                expected_rp_id=RP_ID,
                expected_origin=state.origin,
            )
            name = state.sessions[challenge.hex()]["user"]
            keys[verified.credential_id] = (verified.credential_public_key, name)
            state.verified.append(f"register:{name}")
            return JSONResponse({"verified": True})

        async def login_options(request: Request) -> Response:
            made = webauthn.generate_authentication_options(rp_id=RP_ID)
            challenges.append(made.challenge)
            options = webauthn.helpers.options_to_json_dict(made)
            del options["allowCredentials"]  # an empty list would say "no passkeys for this user"
            return JSONResponse(options)

        async def login_verify(request: Request) -> Response:
            body = await request.json()
            public_key, name = keys[webauthn.base64url_to_bytes(body["rawId"])]
            webauthn.verify_authentication_response(
                credential=body,
                expected_challenge=challenges[-1],
                expected_rp_id=RP_ID,
                expected_origin=state.origin,
                credential_public_key=public_key,
                credential_current_sign_count=0,
            )
            state.verified.append(f"login:{name}")
            return JSONResponse({"verified": True})

        return Starlette(
            routes=[
                Route("/generate-registration-options", register_options),
                Route("/verify-registration", register_verify, methods=["POST"]),
                Route("/generate-authentication-options", login_options),
                Route("/verify-authentication", login_verify, methods=["POST"]),
            ]
        )

    return app


def test_account_matches_a_display_name_when_no_user_name_does() -> None:
    """README: ``--account`` picks "the one of this user name (else display name)" (mutants: the display
    name compared with ``!=``; ``named and ...`` for ``named or ...``)."""
    key = authenticator()
    accounts = [("ana@example.com", "Ana Lopez"), ("bob@example.com", "Bob Stone")]
    with (
        serve(_accounts_app(accounts)) as server,
        Session(server.url, profile.load("simplewebauthn"), server.url) as session,
    ):
        for _ in accounts:
            flows.register(session, client(server.url, lambda: connect(key)), flows.Request())
        for chosen in ["Ana Lopez", "Bob Stone", "bob@example.com"]:
            flows.login(session, client(server.url, lambda: connect(key)), flows.Request(account=chosen))
    assert server.state.verified == [
        "register:ana@example.com",
        "register:bob@example.com",
        "login:ana@example.com",
        "login:bob@example.com",
        "login:bob@example.com",
    ]


def test_user_picks_its_passkey_when_the_server_lists_none() -> None:
    """``keyctl login --user NAME`` at a server that sends no allowCredentials: the key offers every
    account, and the one of that user name signs in (mutant: ``a.name != request.user``)."""
    key = authenticator()
    accounts = [("ana@example.com", "Ana"), ("bob@example.com", "Bob")]
    with (
        serve(_accounts_app(accounts)) as server,
        Session(server.url, profile.load("simplewebauthn"), server.url) as session,
    ):
        for _ in accounts:
            flows.register(session, client(server.url, lambda: connect(key)), flows.Request())
        for name, _display_name in [*accounts, *accounts]:
            flows.login(session, client(server.url, lambda: connect(key)), flows.Request(user=name))
    assert server.state.verified[2:] == [f"login:{name}" for name, _ in [*accounts, *accounts]]
