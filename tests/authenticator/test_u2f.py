"""CTAP1/U2F over CTAPHID_MSG (issue #16 item 1), through python-fido2's Ctap1 over both transports.

Registrations are checked by fido2's RegistrationData.verify and, made by fido2's Fido2Client against a
U2F-only key, by py_webauthn's fido-u2f attestation verifier; cross-protocol use goes through Ctap2.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap import CtapError
from fido2.ctap1 import ApduError, Ctap1, RegistrationData, SignatureData
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID, CtapHidDevice

from keyctl.authenticator import (
    AttestationMode,
    CounterMode,
    PresenceMode,
    PresenceRequest,
    VirtualAuthenticator,
    new_state,
)
from keyctl.authenticator.state import Protocols
from tests.authenticator import rp
from tests.authenticator.conftest import Transport

APP = hashlib.sha256(b"example.com").digest()  # the application parameter of rpId/appId example.com
CHALLENGE = hashlib.sha256(b"client data").digest()
ES256 = [{"type": "public-key", "alg": -7}]
EDDSA = [{"type": "public-key", "alg": -8}]
RP = {"id": "example.com", "name": "Example"}

OK, USE_NOT_SATISFIED, WRONG_DATA, WRONG_LENGTH, INS_NOT_SUPPORTED, CLA_NOT_SUPPORTED = (
    0x9000,
    0x6985,
    0x6A80,
    0x6700,
    0x6D00,
    0x6E00,
)


def apdu_code(action: object) -> int:
    with pytest.raises(ApduError) as raised:
        action()  # type: ignore[operator]
    return int(raised.value.code)


def raw_msg(device: CtapHidDevice, apdu: bytes) -> tuple[bytes, int]:
    """Send an APDU as it is (short or extended), return (data, status word)."""
    response = device.call(CTAPHID.MSG, apdu)
    return response[:-2], struct.unpack(">H", response[-2:])[0]


def test_version_and_capabilities(device: CtapHidDevice) -> None:
    assert Ctap1(device).get_version() == "U2F_V2"
    assert device.capabilities & CAPABILITY.CBOR
    assert not device.capabilities & CAPABILITY.NMSG
    assert Ctap2(device).get_info().versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]


@pytest.mark.parametrize("mode", [AttestationMode.X5C, AttestationMode.NONE, AttestationMode.SELF])
def test_register_and_authenticate(transport: Transport, mode: AttestationMode) -> None:
    state = new_state(attestation_mode=mode)
    ctap1 = Ctap1(transport(VirtualAuthenticator(state)))
    registration = ctap1.register(CHALLENGE, APP)
    registration.verify(APP, CHALLENGE)  # fido2 checks the signature with the certificate's key
    certificate = x509.load_der_x509_certificate(registration.certificate)
    if mode is AttestationMode.SELF:  # U2F's self attestation: the credential key certifies itself
        assert certificate.issuer == certificate.subject
        assert certificate.public_key().public_numbers() == _public_key(registration).public_numbers()
    else:  # the batch certificate, issued by this authenticator's CA
        ca = x509.load_der_x509_certificate(state.ca_cert)
        certificate.verify_directly_issued_by(ca)
        assert registration.certificate == state.attestation_cert
    signed = ctap1.authenticate(CHALLENGE, APP, registration.key_handle)
    assert signed.user_presence == 1
    signed.verify(APP, CHALLENGE, registration.public_key)
    again = ctap1.authenticate(CHALLENGE, APP, registration.key_handle)
    assert again.counter > signed.counter


def _public_key(registration: RegistrationData) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), registration.public_key)


def test_check_only_and_presence_controls(transport: Transport) -> None:
    authenticator = VirtualAuthenticator(new_state())
    ctap1 = Ctap1(transport(authenticator))
    key_handle = ctap1.register(CHALLENGE, APP).key_handle
    # check-only: "conditions not satisfied" means the key handle is ours for this application
    assert (
        apdu_code(lambda: ctap1.authenticate(CHALLENGE, APP, key_handle, check_only=True))
        == USE_NOT_SATISFIED
    )
    other_app = hashlib.sha256(b"other.example").digest()
    assert (
        apdu_code(lambda: ctap1.authenticate(CHALLENGE, other_app, key_handle, check_only=True)) == WRONG_DATA
    )
    foreign = Ctap1(transport(VirtualAuthenticator())).register(CHALLENGE, APP).key_handle
    assert apdu_code(lambda: ctap1.authenticate(CHALLENGE, APP, foreign)) == WRONG_DATA
    # dont-enforce-user-presence (0x08) signs without a touch and says so in the flags
    data = CHALLENGE + APP + bytes([len(key_handle)]) + key_handle
    response = ctap1.send_apdu(ins=Ctap1.INS.AUTHENTICATE, p1=0x08, data=data)
    signed = SignatureData(response)
    assert signed.user_presence == 0
    assert apdu_code(lambda: ctap1.send_apdu(ins=Ctap1.INS.AUTHENTICATE, p1=0x05, data=data)) == WRONG_DATA


def test_nobody_touching_is_conditions_not_satisfied(transport: Transport) -> None:
    for presence in (PresenceMode.DENY, PresenceMode.TIMEOUT):
        ctap1 = Ctap1(transport(VirtualAuthenticator(new_state(presence=presence, presence_timeout_s=5))))
        assert apdu_code(lambda: ctap1.register(CHALLENGE, APP)) == USE_NOT_SATISFIED  # noqa: B023


def test_prompt_answers_at_once_and_keeps_the_touch_for_the_retry(transport: Transport) -> None:
    """Under `prompt` a U2F request never blocks on the person (FIDO U2F: test-of-user-presence-required,
    the host retries): 0x6985 while asking, the yes is kept for the next request and used up by it."""
    asked: list[PresenceRequest] = []
    answer = threading.Event()

    def prompter(request: PresenceRequest) -> bool:
        asked.append(request)
        return answer.wait(10)

    authenticator = VirtualAuthenticator(new_state(presence=PresenceMode.PROMPT), prompter=prompter)
    ctap1 = Ctap1(transport(authenticator))
    started = time.monotonic()
    assert apdu_code(lambda: ctap1.register(CHALLENGE, APP)) == USE_NOT_SATISFIED
    assert apdu_code(lambda: ctap1.register(CHALLENGE, APP)) == USE_NOT_SATISFIED
    assert time.monotonic() - started < 5  # answered while the question is still open
    assert [request.action for request in asked] == ["register this key (U2F)"]  # asked once, not twice
    answer.set()
    deadline = time.monotonic() + 5
    registration: RegistrationData | None = None
    refusals: set[int] = set()
    while registration is None:  # the host's retry loop, as fido2's CTAP1 client backend polls
        assert time.monotonic() < deadline
        try:
            registration = ctap1.register(CHALLENGE, APP)
        except ApduError as error:
            refusals.add(error.code)
            time.sleep(0.05)
    assert refusals <= {USE_NOT_SATISFIED}
    registration.verify(APP, CHALLENGE)
    answer.clear()  # the touch was used up: the next request asks again
    assert apdu_code(lambda: ctap1.authenticate(CHALLENGE, APP, registration.key_handle)) == USE_NOT_SATISFIED
    assert len(asked) == 2
    answer.set()


def test_prompt_through_fido2_clients_ctap1_fallback(transport: Transport) -> None:
    """Fido2Client polls a U2F-only key on 0x6985 until the person at the prompt says yes."""

    def prompter(request: PresenceRequest) -> bool:
        time.sleep(0.3)  # the person takes a moment
        return True

    state = new_state(protocols=Protocols.U2F, presence=PresenceMode.PROMPT)
    device = transport(VirtualAuthenticator(state, prompter=prompter))
    registered = rp.register(device, attestation="direct")
    assert registered.fmt == "fido-u2f"


def test_status_words_and_apdu_encodings(device: CtapHidDevice) -> None:
    data, sw = raw_msg(device, bytes([0x00, 0x03, 0, 0]))  # case 1
    assert (data, sw) == (b"U2F_V2", OK)
    assert raw_msg(device, bytes([0x00, 0x03, 0, 0, 0x00])) == (b"U2F_V2", OK)  # case 2 short, Le
    assert raw_msg(device, bytes([0x00, 0x03, 0, 0, 0, 0, 0])) == (b"U2F_V2", OK)  # case 2 extended
    register = CHALLENGE + APP
    short = bytes([0x00, 0x01, 0x03, 0, 64]) + register  # case 3 short, as some U2F hosts send it
    data, sw = raw_msg(device, short)
    assert sw == OK
    assert data[0] == 0x05
    data, sw = raw_msg(device, short + b"\x00")  # case 4 short
    assert sw == OK
    extended = bytes([0x00, 0x01, 0x03, 0, 0, 0, 64]) + register + b"\x00\x00"  # case 4 extended
    assert raw_msg(device, extended)[1] == OK
    assert raw_msg(device, bytes([0x80, 0x03, 0, 0]))[1] == CLA_NOT_SUPPORTED
    assert raw_msg(device, bytes([0x00, 0x40, 0, 0]))[1] == INS_NOT_SUPPORTED
    assert raw_msg(device, bytes([0x00, 0x01, 0x03, 0, 63]) + register[:63])[1] == WRONG_LENGTH
    assert raw_msg(device, bytes([0x00, 0x01, 0x03, 0, 64]) + register[:10])[1] == WRONG_LENGTH  # Lc lies
    assert raw_msg(device, bytes([0x00, 0x03, 0, 0, 1, 0x55]))[1] == WRONG_LENGTH  # VERSION takes no data
    assert raw_msg(device, bytes([0x00, 0x02]))[1] == WRONG_LENGTH
    key_handle = Ctap1(device).register(CHALLENGE, APP).key_handle
    truncated = CHALLENGE + APP + bytes([len(key_handle)]) + key_handle[:-1]
    assert raw_msg(device, bytes([0x00, 0x02, 0x03, 0, 0, 0, len(truncated)]) + truncated)[1] == WRONG_LENGTH


def test_u2f_registration_is_usable_through_ctap2_on_the_same_counter(transport: Transport) -> None:
    device = transport(VirtualAuthenticator(new_state(counter_mode=CounterMode.PER_CREDENTIAL)))
    ctap1, ctap2 = Ctap1(device), Ctap2(device)
    registration = ctap1.register(CHALLENGE, APP)
    first = ctap1.authenticate(CHALLENGE, APP, registration.key_handle)
    allow = [{"type": "public-key", "id": registration.key_handle}]
    assertion = ctap2.get_assertion("example.com", CHALLENGE, allow)
    assert assertion.auth_data.rp_id_hash == APP
    assert assertion.auth_data.counter == first.counter + 1
    public = _public_key(registration)
    public.verify(assertion.signature, bytes(assertion.auth_data) + CHALLENGE, ec.ECDSA(hashes.SHA256()))
    assert ctap1.authenticate(CHALLENGE, APP, registration.key_handle).counter == first.counter + 2


def test_ctap2_credential_is_usable_through_u2f(transport: Transport) -> None:
    device = transport(VirtualAuthenticator(new_state(counter_mode=CounterMode.PER_CREDENTIAL)))
    ctap1, ctap2 = Ctap1(device), Ctap2(device)
    made = ctap2.make_credential(CHALLENGE, RP, {"id": b"u", "name": "u"}, ES256)
    credential = made.auth_data.credential_data
    signed = ctap1.authenticate(CHALLENGE, APP, credential.credential_id)
    assert signed.counter == made.auth_data.counter + 1
    x, y = credential.public_key[-2], credential.public_key[-3]
    signed.verify(APP, CHALLENGE, b"\x04" + x + y)
    # discoverable, EdDSA and uvRequired credentials stay CTAP2-only, as on real keys
    resident = ctap2.make_credential(CHALLENGE, RP, {"id": b"r"}, ES256, options={"rk": True, "uv": True})
    eddsa = ctap2.make_credential(CHALLENGE, RP, {"id": b"e"}, EDDSA)
    protected = ctap2.make_credential(
        CHALLENGE, RP, {"id": b"p"}, ES256, extensions={"credProtect": 3}, options={"uv": True}
    )
    for other in (resident, eddsa, protected):
        handle = other.auth_data.credential_data.credential_id
        assert apdu_code(lambda: ctap1.authenticate(CHALLENGE, APP, handle)) == WRONG_DATA  # noqa: B023


def test_u2f_only_key(transport: Transport) -> None:
    """Fido2Client falls back to CTAP1, as browsers do with old keys; py_webauthn verifies fido-u2f."""
    device = transport(VirtualAuthenticator(new_state(protocols=Protocols.U2F)))
    assert not device.capabilities & CAPABILITY.CBOR
    with pytest.raises(CtapError) as raised:
        device.call(CTAPHID.CBOR, b"\x04")
    assert raised.value.code == CtapError.ERR.INVALID_COMMAND
    registered = rp.register(device, attestation="direct")
    assert registered.fmt == "fido-u2f"
    challenge, options = rp.request_options([registered.credential_id])
    count = rp.verify_assertion(rp.authenticate_response(device, options), challenge, registered, 0)
    assert count > 0


def test_ctap2_only_key(transport: Transport) -> None:
    device = transport(VirtualAuthenticator(new_state(protocols=Protocols.CTAP2)))
    assert device.capabilities & CAPABILITY.NMSG
    assert Ctap2(device).get_info().versions == ["FIDO_2_0", "FIDO_2_1"]
    with pytest.raises(CtapError) as raised:
        Ctap1(device).get_version()
    assert raised.value.code == CtapError.ERR.INVALID_COMMAND


def test_random_apdus_never_crash(device: CtapHidDevice) -> None:
    for size in range(0, 80):
        _, sw = raw_msg(device, os.urandom(size))
        assert sw in (OK, USE_NOT_SATISFIED, WRONG_DATA, WRONG_LENGTH, INS_NOT_SUPPORTED, CLA_NOT_SUPPORTED)
    assert Ctap1(device).get_version() == "U2F_V2"


def test_cli_protocol_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyctl.authenticator import store
    from keyctl.errors import ExitCode
    from keyctl.hid import open_device
    from tests.conftest import run_keyctl

    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    assert run_keyctl(["virtual", "create", "old", "--protocol", "u2f"]).exit_code == 0
    info = run_keyctl(["virtual", "info", "old", "--json"])
    assert '"protocols": "u2f"' in info.stdout
    device = open_device("virtual:old")
    assert not device.capabilities & CAPABILITY.CBOR
    assert Ctap1(device).get_version() == "U2F_V2"
    monkeypatch.setenv("CI_PIN", "123456")
    refused = run_keyctl(["virtual", "create", "old2", "--protocol", "u2f", "--pin-env", "CI_PIN"])
    assert refused.exit_code == ExitCode.INVALID_INPUT
    assert "U2F-only" in refused.stderr
    assert not store.exists("old2")
    synced = run_keyctl(["virtual", "create", "s", "--kind", "synced", "--protocol", "both"])
    assert synced.exit_code == ExitCode.INVALID_INPUT
