"""The login's direct parse and verify (keyctl.server.assertion) against python-fido2's own path
(``AuthenticationResponse.from_dict`` + ``Fido2Server.authenticate_complete``): what keyctl accepts,
fido2 accepts too, and a response that parses but does not verify gets fido2's message. Plus the login
options, written without fido2's dataclasses, compared with ``Fido2Server.authenticate_begin``."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from fido2.cose import ES256
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    UserVerificationRequirement,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from keyctl.server import assertion
from keyctl.server.challenges import CHALLENGE_TTL
from tests.server.conftest import EMAIL, FakeClock, client, enroll, register
from tests.server.softauth import UP, UV, SoftAuthenticator, b64url, unb64url

ORIGIN = "http://localhost:8765"
RP_ID = "localhost"
CHALLENGE = bytes(range(32))
OPTIONS = {"challenge": b64url(CHALLENGE), "rpId": RP_ID, "allowCredentials": []}

_key = SoftAuthenticator(ORIGIN)
_key.create(
    {"rp": {"id": RP_ID}, "user": {"id": b64url(b"user")}, "challenge": "x", "excludeCredentials": []}
)
_credential = next(iter(_key.credentials.values()))
CREDENTIAL = AttestedCredentialData.create(
    bytes(16), _credential.id, ES256.from_cryptography_key(_credential.key.public_key())
)
FIDO = Fido2Server(PublicKeyCredentialRpEntity(name="keyctl", id=RP_ID), verify_origin=lambda o: o == ORIGIN)


def fido2_verdict(body: dict[str, Any], uv: UserVerificationRequirement) -> str:
    """'ok', or fido2's refusal: 'parse' when from_dict fails, else authenticate_complete's message."""
    try:
        parsed = AuthenticationResponse.from_dict(body)
        parsed.response.client_data.challenge  # noqa: B018  (parsed lazily)
    except Exception:
        return "parse"
    try:
        FIDO.authenticate_complete(
            {"challenge": b64url(CHALLENGE), "user_verification": uv}, [CREDENTIAL], parsed
        )
    except Exception as error:
        return str(error)
    return "ok"


def keyctl_verdict(body: dict[str, Any], uv: UserVerificationRequirement) -> str:
    try:
        parsed = assertion.parse(body)
    except assertion.MalformedResponse:
        return "parse"
    assert parsed.credential_id == _credential.id  # the mutations keep the credential
    try:
        assertion.verify(
            parsed,
            public_key=CREDENTIAL.public_key,
            challenge=CHALLENGE,
            origin=ORIGIN,
            rp_id_hash=hashlib.sha256(RP_ID.encode()).digest(),
            user_verification_required=uv == UserVerificationRequirement.REQUIRED,
        )
    except assertion.VerificationError as error:
        return str(error)
    return "ok"


def same_or_stricter(body: dict[str, Any], uv: UserVerificationRequirement) -> str:
    ours, theirs = keyctl_verdict(body, uv), fido2_verdict(body, uv)
    if ours != "parse":  # what keyctl parses, fido2 parses, and both reach the same verdict
        assert ours == theirs, (body, ours, theirs)
    return ours


def good(**tamper: Any) -> dict[str, Any]:
    return _key.get(OPTIONS, credential_id=_credential.id, **tamper)


def client_data_with(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    data = json.loads(unb64url(body["response"]["clientDataJSON"]))
    data.update(fields)
    body["response"]["clientDataJSON"] = b64url(json.dumps(data).encode())
    return body


def test_a_good_assertion_verifies_in_both() -> None:
    assert same_or_stricter(good(), UserVerificationRequirement.PREFERRED) == "ok"
    assert same_or_stricter(good(), UserVerificationRequirement.REQUIRED) == "ok"
    assert same_or_stricter(good(flags=UP), UserVerificationRequirement.PREFERRED) == "ok"


@pytest.mark.parametrize(
    ("body", "uv", "message"),
    [
        (lambda: good(origin="https://evil.example"), "preferred", "Invalid origin in CollectedClientData."),
        (lambda: good(rp_id="evil.example"), "preferred", "Wrong RP ID hash in response."),
        (lambda: good(kind="webauthn.create"), "preferred", "Incorrect type in CollectedClientData."),
        (lambda: good(flags=UV), "preferred", "User Present flag not set."),
        (
            lambda: good(flags=UP),
            "required",
            "User verification required, but user verified flag not set.",
        ),
        (lambda: good(bad_signature=True), "preferred", "Invalid signature."),
        (lambda: client_data_with(good(), challenge=b64url(os.urandom(32))), "preferred", "Wrong challenge"),
    ],
)
def test_each_check_refuses_with_fido2s_message(
    body: Callable[[], dict[str, Any]], uv: str, message: str
) -> None:
    verdict = same_or_stricter(body(), UserVerificationRequirement(uv))
    assert verdict.startswith(message)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: {k: v for k, v in b.items() if k != "id"},  # fido2 accepts a missing id
        lambda b: {**b, "rawId": b["rawId"] + "=="},  # padding
        lambda b: {**b, "id": b["id"] + "*", "rawId": b["rawId"] + "*"},  # foreign base64 characters
        lambda b: {**b, "rawId": list(unb64url(b["rawId"]))},  # fido2 turns a list into bytes
        lambda b: client_data_with(b, type=["webauthn.get"]),
        lambda b: {**b, "response": {**b["response"], "userHandle": 5}},  # fido2: bytes(5)
    ],
)
def test_keyctl_is_stricter_where_fido2_is_lenient(mutate: Callable[[dict[str, Any]], Any]) -> None:
    assert keyctl_verdict(mutate(good()), UserVerificationRequirement.PREFERRED) == "parse"


def _utf16_client_data(body: dict[str, Any]) -> dict[str, Any]:
    text = unb64url(body["response"]["clientDataJSON"]).decode()
    return {**body, "response": {**body["response"], "clientDataJSON": b64url(text.encode("utf-16"))}}


def test_client_data_must_be_utf8() -> None:
    # json.loads would read UTF-16 bytes; fido2 decodes UTF-8 first, and so must keyctl.
    utf16 = _utf16_client_data(good())
    assert fido2_verdict(utf16, UserVerificationRequirement.PREFERRED) == "parse"
    assert keyctl_verdict(utf16, UserVerificationRequirement.PREFERRED) == "parse"


def _flip(text: str, data: st.DataObject) -> str:
    try:
        raw = bytearray(unb64url(text))
    except ValueError:  # not base64 (an earlier mutation): leave it
        return text
    if not raw:
        return text
    index = data.draw(st.integers(0, 255)) % len(raw)  # signatures vary in length: draw independently
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    return b64url(bytes(raw))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
base64_values = st.binary(max_size=80).map(b64url)
FIELDS = ["id", "rawId", "type", "response", "clientExtensionResults", "authenticatorAttachment"]
RESPONSE_FIELDS = ["clientDataJSON", "authenticatorData", "signature", "userHandle"]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), uv=st.sampled_from(list(UserVerificationRequirement)))
def test_mutated_responses_never_pass_where_fido2_refuses(data: st.DataObject, uv: Any) -> None:
    body = good(flags=data.draw(st.sampled_from([UP, UP | UV, UV, 0, UP | UV | 0x80, UP | 0x40])))
    for name in data.draw(st.lists(st.sampled_from(["type", "origin", "challenge", "crossOrigin"]))):
        value = data.draw(json_values | base64_values | st.just(ORIGIN) | st.just("webauthn.get"))
        body = client_data_with(body, **{name: value})
    response = body["response"]
    for where in data.draw(st.lists(st.sampled_from(FIELDS + RESPONSE_FIELDS), min_size=1, max_size=3)):
        target = response if where in RESPONSE_FIELDS and isinstance(response, dict) else body
        how = data.draw(st.sampled_from(["json", "base64", "flip", "drop"]))
        if how == "drop":
            target.pop(where, None)
        elif how == "json":
            target[where] = data.draw(json_values)
        elif how == "base64":
            target[where] = data.draw(base64_values)
        elif isinstance(target.get(where), str):
            target[where] = _flip(target[where], data)
    if isinstance(body.get("rawId"), str):  # unknown credentials are the policy's job, not this module's
        body["rawId"] = body["id"] = b64url(_credential.id)
    same_or_stricter(body, uv)


def test_login_options_match_fido2s_authenticate_begin(server: Any, clock: FakeClock) -> None:
    account = enroll(server, clock)
    for transports in (("usb",), ("hybrid", "internal", "smoke-signal"), ()):
        assert register(account.http, SoftAuthenticator(server.url), transports=transports).status_code == 200
    passkeys = account.http.get("/api/passkeys").json()["passkeys"]
    known = {t.value for t in AuthenticatorTransport}
    descriptors = [  # as the server built them with fido2 before: unknown transports left out
        PublicKeyCredentialDescriptor(
            type=PublicKeyCredentialType.PUBLIC_KEY,
            id=unb64url(p["id"]),
            transports=[AuthenticatorTransport(t) for t in p["transports"] if t in known] or None,
        )
        for p in passkeys
    ]
    fido = Fido2Server(PublicKeyCredentialRpEntity(name="keyctl", id="localhost"))
    fido.timeout = CHALLENGE_TTL * 1000  # type: ignore[assignment]
    for request, credentials in [
        ({"email": EMAIL}, descriptors),
        ({"email": EMAIL.upper(), "userVerification": "required"}, descriptors),
        ({}, []),
        ({"email": "nobody@example.com", "userVerification": "discouraged"}, []),
    ]:
        ours = client(server).post("/api/passkeys/login/options", json=request).json()
        options, _ = fido.authenticate_begin(
            credentials=credentials,
            user_verification=UserVerificationRequirement(request.get("userVerification", "preferred")),
            challenge=unb64url(ours["challenge"]),
        )
        assert json.loads(json.dumps(dict(options.public_key))) == ours
        assert len(unb64url(ours["challenge"])) == 32
