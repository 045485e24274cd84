"""Presence policies (auto, deny, prompt, timeout), keepalives and cancel, through fido2's CtapHidDevice."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from fido2.ctap import STATUS, CtapError
from fido2.ctap2 import ClientPin, Ctap2

from keyctl.authenticator import Policy, PresenceMode, PresenceRequest, VirtualAuthenticator
from tests.authenticator.conftest import Transport

ERR = CtapError.ERR
CDH = hashlib.sha256(b"cd").digest()
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


def _make(ctap: Ctap2, **kwargs: object) -> object:
    return ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, **kwargs)  # type: ignore[arg-type]


def test_deny_answers_operation_denied(transport: Transport) -> None:
    ctap = Ctap2(transport(VirtualAuthenticator(policy=Policy(presence=PresenceMode.DENY))))
    with pytest.raises(CtapError) as raised:
        _make(ctap)
    assert raised.value.code == ERR.OPERATION_DENIED


def test_timeout_sends_upneeded_keepalives_then_user_action_timeout(transport: Transport) -> None:
    policy = Policy(presence=PresenceMode.TIMEOUT, presence_timeout_s=0.5)
    ctap = Ctap2(transport(VirtualAuthenticator(policy=policy)))
    seen: list[int] = []
    started = time.monotonic()
    with pytest.raises(CtapError) as raised:
        _make(ctap, on_keepalive=seen.append)
    assert raised.value.code == ERR.USER_ACTION_TIMEOUT
    assert seen == [STATUS.UPNEEDED]  # fido2 reports each distinct status once
    assert 0.4 < time.monotonic() - started < 5


def test_prompt_policy_asks_and_obeys(transport: Transport) -> None:
    asked: list[PresenceRequest] = []
    answers = [True, False]

    def prompter(request: PresenceRequest) -> bool:
        asked.append(request)
        time.sleep(0.25)  # a person takes a moment: keepalives flow meanwhile
        return answers.pop(0)

    policy = Policy(presence=PresenceMode.PROMPT, presence_timeout_s=5, prompter=prompter)
    ctap = Ctap2(transport(VirtualAuthenticator(policy=policy)))
    seen: list[int] = []
    made = _make(ctap, on_keepalive=seen.append)
    assert made.auth_data.is_user_present()  # type: ignore[attr-defined]
    assert seen == [STATUS.UPNEEDED]
    assert asked[0].rp_id == "example.com"
    with pytest.raises(CtapError) as raised:
        _make(ctap)
    assert raised.value.code == ERR.OPERATION_DENIED


def test_cancel_aborts_a_presence_wait_with_keepalive_cancel(transport: Transport) -> None:
    released = threading.Event()

    def prompter(request: PresenceRequest) -> bool:
        released.wait(10)  # nobody answers until the test is over
        return True

    policy = Policy(presence=PresenceMode.PROMPT, presence_timeout_s=30, prompter=prompter)
    ctap = Ctap2(transport(VirtualAuthenticator(policy=policy)))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(CtapError) as raised:
            _make(ctap, event=cancel)
        assert raised.value.code == ERR.KEEPALIVE_CANCEL
        assert time.monotonic() - started < 5
        # the device is free again: a command without presence works at once
        assert ctap.get_info().versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]
    finally:
        released.set()


def test_a_uv_token_carries_its_touch_into_one_command(transport: Transport) -> None:
    """CTAP 2.1 §6.5.5.7.3 step 13 and §6.1.2 step 14: the touch collected while built-in UV issued the
    token serves the first makeCredential made with it; the next one asks again."""
    asked: list[str] = []

    def prompter(request: PresenceRequest) -> bool:
        asked.append(request.action)
        return True

    policy = Policy(presence=PresenceMode.PROMPT, presence_timeout_s=5, prompter=prompter)
    ctap = Ctap2(transport(VirtualAuthenticator(policy=policy)))
    client_pin = ClientPin(ctap)
    permissions = ClientPin.PERMISSION.MAKE_CREDENTIAL
    token = client_pin.get_uv_token(permissions, RP["id"])
    assert len(asked) == 1

    def make_with_token() -> object:
        protocol = client_pin.protocol
        return _make(ctap, pin_uv_param=protocol.authenticate(token, CDH), pin_uv_protocol=protocol.VERSION)

    made = make_with_token()
    assert made.auth_data.is_user_present()  # type: ignore[attr-defined]
    assert len(asked) == 1  # no second question for the same ceremony
    make_with_token()
    assert len(asked) == 2  # the token's touch served once


def test_a_uv_token_carries_its_touch_into_one_assertion_and_only_with_the_token(
    transport: Transport,
) -> None:
    """The same rule for getAssertion: a sign-in made with the token built-in UV just issued asks for no
    second touch, and one made without the token asks for its own touch, whatever token is pending."""
    asked: list[str] = []

    def prompter(request: PresenceRequest) -> bool:
        asked.append(request.action)
        return True

    policy = Policy(presence=PresenceMode.PROMPT, presence_timeout_s=5, prompter=prompter)
    ctap = Ctap2(transport(VirtualAuthenticator(policy=policy)))
    client_pin = ClientPin(ctap)
    made = _make(ctap)
    allow = [{"type": "public-key", "id": made.auth_data.credential_data.credential_id}]  # type: ignore[attr-defined]
    assert asked == ["create a passkey"]

    token = client_pin.get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, RP["id"])
    assert len(asked) == 2
    protocol = client_pin.protocol
    signed = ctap.get_assertion(
        RP["id"], CDH, allow, pin_uv_param=protocol.authenticate(token, CDH), pin_uv_protocol=protocol.VERSION
    )
    assert signed.auth_data.is_user_present()
    assert signed.auth_data.is_user_verified()
    assert len(asked) == 2  # the token's touch served this sign-in

    client_pin.get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, RP["id"])  # a fresh touch, then unused
    assert len(asked) == 3
    plain = ctap.get_assertion(RP["id"], CDH, allow)
    assert plain.auth_data.is_user_present()
    assert asked[3:] == ["sign in"]  # asked for its own touch
