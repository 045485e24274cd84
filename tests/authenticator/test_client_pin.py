"""authenticatorClientPIN and authenticatorConfig through fido2's ClientPin and Config."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import AttestationResponse, Ctap2
from fido2.ctap2.config import Config
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.webauthn import PublicKeyCredentialCreationOptions

from keyctl.authenticator import AttestationMode, UvMode, VirtualAuthenticator, new_state
from tests.authenticator import rp
from tests.authenticator.conftest import Transport

ERR = CtapError.ERR
PERM = ClientPin.PERMISSION
CDH = hashlib.sha256(b"client data").digest()
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]
PROTOCOLS = [PinProtocolV1, PinProtocolV2]


def pin_only(transport: Transport, pin: str | None = None) -> tuple[VirtualAuthenticator, Ctap2]:
    """An authenticator without built-in UV, so a PIN is the only user verification."""
    authenticator = VirtualAuthenticator(new_state(uv=UvMode.NONE), pin_code=pin)
    return authenticator, Ctap2(transport(authenticator))


def code(call: object) -> ERR:
    assert callable(call)
    with pytest.raises(CtapError) as raised:
        call()
    return raised.value.code


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["v1", "v2"])
def test_set_change_and_use_a_pin(transport: Transport, protocol: type) -> None:
    _, ctap = pin_only(transport)
    client_pin = ClientPin(ctap, protocol())
    client_pin.set_pin("1234")
    assert ctap.get_info().options["clientPin"] is True
    # CTAP 2.1 §6.5.5.5 step 3: setPIN on a key with a PIN is PIN_AUTH_INVALID, and the PIN stays
    assert code(lambda: client_pin.set_pin("5678")) == ERR.PIN_AUTH_INVALID
    assert code(lambda: client_pin.get_pin_token("5678")) == ERR.PIN_INVALID
    client_pin.change_pin("1234", "98765")
    assert code(lambda: client_pin.get_pin_token("1234")) == ERR.PIN_INVALID
    token = client_pin.get_pin_token("98765", PERM.MAKE_CREDENTIAL, "example.com")
    auth = client_pin.protocol.authenticate(token, CDH)
    made = ctap.make_credential(
        CDH, RP, {"id": b"u"}, ES256, pin_uv_param=auth, pin_uv_protocol=client_pin.protocol.VERSION
    )
    assert made.auth_data.is_user_verified()
    # a token bound to example.com is refused for another RP, and lacks the getAssertion permission
    other = {"id": "other.example", "name": "x"}
    protocol_version = client_pin.protocol.VERSION
    assert (
        code(
            lambda: ctap.make_credential(
                CDH, other, {"id": b"u"}, ES256, pin_uv_param=auth, pin_uv_protocol=protocol_version
            )
        )
        == ERR.PIN_AUTH_INVALID
    )
    no_ga = code(lambda: ctap.get_assertion("example.com", CDH, None, None, None, auth, protocol_version))
    assert no_ga == ERR.PIN_AUTH_INVALID


def test_pin_retries_without_a_pin_is_pin_not_set(transport: Transport) -> None:
    """As real keys answer (CTAP 2.1 allows this or a count); python-fido2's device suite expects it."""
    _, ctap = pin_only(transport)
    assert code(lambda: ClientPin(ctap).get_pin_retries()) == ERR.PIN_NOT_SET
    ClientPin(ctap).set_pin("1234")
    assert ClientPin(ctap).get_pin_retries()[0] == 8


def test_permissions_of_features_the_key_lacks_are_unauthorized(transport: Transport) -> None:
    """CTAP 2.1 §6.5.5.7.2 step 4: lbw while largeBlobs is absent, be while bioEnroll is absent."""
    _, ctap = pin_only(transport, pin="1234")
    client_pin = ClientPin(ctap)
    assert "bioEnroll" not in ctap.info.options
    assert code(lambda: client_pin.get_pin_token("1234", PERM.BIO_ENROLL)) == ERR.UNAUTHORIZED_PERMISSION
    if "largeBlobs" in ctap.info.options:
        assert client_pin.get_pin_token("1234", PERM.LARGE_BLOB_WRITE)
    else:
        assert code(lambda: client_pin.get_pin_token("1234", PERM.LARGE_BLOB_WRITE)) == (
            ERR.UNAUTHORIZED_PERMISSION
        )
    assert client_pin.get_pin_retries()[0] == 8  # refused before the PIN was tried


def test_pin_policy_short_pin_refused(transport: Transport) -> None:
    _, ctap = pin_only(transport)
    client_pin = ClientPin(ctap)
    with pytest.raises(ValueError, match="4"):  # fido2 refuses < 4 characters itself
        client_pin.set_pin("12")
    Config(ctap).set_min_pin_length(6)
    assert ctap.get_info().min_pin_length == 6
    assert code(lambda: client_pin.set_pin("12345")) == ERR.PIN_POLICY_VIOLATION
    client_pin.set_pin("123456")


def test_three_wrong_pins_block_until_power_cycle_and_eight_block_for_good(transport: Transport) -> None:
    authenticator, ctap = pin_only(transport, pin="1234")
    client_pin = ClientPin(ctap)
    for attempt in range(1, 3):
        assert code(lambda: client_pin.get_pin_token("0000")) == ERR.PIN_INVALID
        assert client_pin.get_pin_retries() == (8 - attempt, False)
    assert code(lambda: client_pin.get_pin_token("0000")) == ERR.PIN_AUTH_BLOCKED
    assert code(lambda: client_pin.get_pin_token("1234")) == ERR.PIN_AUTH_BLOCKED  # even the right one
    # powerCycleState says so, which hosts (and 'keyctl key pin retries') show as "re-insert the key"
    assert client_pin.get_pin_retries() == (5, True)
    authenticator.power_cycle()
    assert client_pin.get_pin_retries() == (5, False)
    client_pin.get_pin_token("1234")  # the right PIN resets the retries
    assert client_pin.get_pin_retries() == (8, False)
    results = []
    for _ in range(8):
        results.append(code(lambda: client_pin.get_pin_token("0000")))
        if results[-1] == ERR.PIN_AUTH_BLOCKED:
            authenticator.power_cycle()
    assert results[-1] == ERR.PIN_BLOCKED
    assert client_pin.get_pin_retries()[0] == 0
    authenticator.power_cycle()
    assert code(lambda: client_pin.get_pin_token("1234")) == ERR.PIN_BLOCKED


def test_mc_without_token_on_a_pin_protected_key(transport: Transport) -> None:
    _, ctap = pin_only(transport, pin="1234")
    # non-discoverable without UV is allowed (makeCredUvNotRqd); discoverable needs the PIN
    ctap.make_credential(CDH, RP, {"id": b"u"}, ES256)
    assert code(lambda: ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, options={"rk": True})) == (
        ERR.PUAT_REQUIRED
    )
    assert code(lambda: ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, pin_uv_param=b"x")) == (
        ERR.MISSING_PARAMETER
    )
    assert code(
        lambda: ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, pin_uv_param=b"x" * 32, pin_uv_protocol=2)
    ) == (ERR.PIN_AUTH_INVALID)


def test_uv_token_with_built_in_verification(device: CtapHidDevice) -> None:
    ctap = Ctap2(device)
    client_pin = ClientPin(ctap)
    token = client_pin.get_uv_token(PERM.GET_ASSERTION | PERM.MAKE_CREDENTIAL, "example.com")
    assert len(token) == 32
    assert client_pin.get_uv_retries() == 8


class PinEntry(UserInteraction):
    def __init__(self, pin: str) -> None:
        self.pin = pin

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        return self.pin


def test_fido2_client_uses_the_pin(transport: Transport) -> None:
    _, ctap = pin_only(transport, pin="2468")
    client = Fido2Client(
        ctap.device, DefaultClientDataCollector(rp.ORIGIN), user_interaction=PinEntry("2468")
    )
    options = PublicKeyCredentialCreationOptions.from_dict(
        {
            "rp": RP,
            "user": {"id": "dXNlcg", "name": "user", "displayName": "User"},
            "challenge": "Y2hhbGxlbmdlY2hhbGxlbmdl",
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"residentKey": "required", "userVerification": "required"},
        }
    )
    response = client.make_credential(options)
    assert response.response.attestation_object.auth_data.is_user_verified()
    wrong = Fido2Client(ctap.device, DefaultClientDataCollector(rp.ORIGIN), user_interaction=PinEntry("1111"))
    with pytest.raises(ClientError) as raised:
        wrong.make_credential(options)
    assert isinstance(raised.value.cause, CtapError)
    assert raised.value.cause.code == ERR.PIN_INVALID


def test_config_always_uv_and_forced_pin_change(transport: Transport) -> None:
    _, ctap = pin_only(transport, pin="1234")
    client_pin = ClientPin(ctap)
    token = client_pin.get_pin_token("1234", PERM.AUTHENTICATOR_CFG)
    config = Config(ctap, client_pin.protocol, token)
    config.toggle_always_uv()
    info = ctap.get_info()
    assert info.options["alwaysUv"] is True
    assert info.options["makeCredUvNotRqd"] is False
    assert code(lambda: ctap.make_credential(CDH, RP, {"id": b"u"}, ES256)) == ERR.PUAT_REQUIRED
    config.set_min_pin_length(min_pin_length=6, rp_ids=["example.com"])
    info = ctap.get_info()
    assert info.force_pin_change is True  # the 4-digit PIN is now too short
    assert info.min_pin_length == 6
    # CTAP 2.1 §6.5.5.7.2 step 11: getPinUvAuthTokenUsingPinWithPermissions answers a policy violation,
    # §6.5.5.7.1 step 11: the older getPinToken answers PIN_INVALID (CTAP 2.0 platforms know no other)
    assert code(lambda: client_pin.get_pin_token("1234", PERM.GET_ASSERTION)) == ERR.PIN_POLICY_VIOLATION
    assert code(lambda: client_pin.get_pin_token("1234")) == ERR.PIN_INVALID
    assert client_pin.get_pin_retries()[0] == 8  # the PIN itself was right both times
    assert (
        code(lambda: Config(ctap, client_pin.protocol, token).set_min_pin_length(4))
        == ERR.PIN_POLICY_VIOLATION
    )
    client_pin.change_pin("1234", "654321")
    assert ctap.get_info().force_pin_change is False
    token = client_pin.get_pin_token("654321", PERM.MAKE_CREDENTIAL, "example.com")
    made = ctap.make_credential(
        CDH,
        RP,
        {"id": b"u"},
        ES256,
        extensions={"minPinLength": True},
        pin_uv_param=client_pin.protocol.authenticate(token, CDH),
        pin_uv_protocol=client_pin.protocol.VERSION,
    )
    assert made.auth_data.extensions == {"minPinLength": 6}
    assert code(lambda: Config(ctap).toggle_always_uv()) == ERR.PUAT_REQUIRED


def test_enterprise_attestation_after_enabling_it(transport: Transport) -> None:
    _, ctap = pin_only(transport)  # no PIN: authenticatorConfig needs no token
    with pytest.raises(CtapError) as raised:
        ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, enterprise_attestation=2)
    assert raised.value.code == ERR.INVALID_PARAMETER
    Config(ctap).enable_enterprise_attestation()
    assert ctap.get_info().options["ep"] is True
    assert code(lambda: ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, enterprise_attestation=3)) == (
        ERR.INVALID_OPTION
    )
    made = ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, enterprise_attestation=2)
    assert made.ep_att is True
    assert made.fmt == "packed"
    assert len(made.att_stmt["x5c"]) == 1


def _certificate(made: AttestationResponse) -> x509.Certificate:
    return x509.load_der_x509_certificate(made.att_stmt["x5c"][0])


def test_enterprise_attestation_follows_the_rp_id_list(transport: Transport) -> None:
    """CTAP 2.1 §6.1.2 step 9: value 1 (vendor-facilitated) only for RP IDs on the authenticator's
    pre-configured list, value 2 (platform-managed) for any; otherwise as if it had not been asked."""
    state = new_state(uv=UvMode.NONE, attestation_mode=AttestationMode.X5C, ep_rp_ids=["listed.example"])
    ctap = Ctap2(transport(VirtualAuthenticator(state)))
    Config(ctap).enable_enterprise_attestation()
    listed = {"id": "listed.example", "name": "Listed"}

    batch = ctap.make_credential(CDH, RP, {"id": b"u"}, ES256)
    unlisted = ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, enterprise_attestation=1)
    assert not unlisted.ep_att
    assert unlisted.att_stmt["x5c"] == batch.att_stmt["x5c"]  # the ordinary (batch) attestation

    vendor = ctap.make_credential(CDH, listed, {"id": b"u"}, ES256, enterprise_attestation=1)
    platform = ctap.make_credential(CDH, RP, {"id": b"u"}, ES256, enterprise_attestation=2)
    for made in (vendor, platform):
        assert made.ep_att is True
        cert = _certificate(made)
        assert cert != _certificate(batch)
        # a device-identifying certificate: its subject carries this device's serial number
        serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        assert len(serials) == 1
        assert _certificate(batch).subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER) == []
        # signed by the same CA as the batch certificate, and it signed authData || clientDataHash
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(state.ca_cert))
        public_key = cert.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(made.att_stmt["sig"], bytes(made.auth_data) + CDH, ec.ECDSA(hashes.SHA256()))
    assert _certificate(vendor) == _certificate(platform)  # one device, one identity
