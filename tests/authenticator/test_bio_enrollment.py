"""authenticatorBioEnrollment through fido2's FPBioEnrollment, with the scripted fingerprint sensor."""

from __future__ import annotations

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.bio import BioEnrollment, CaptureError, FPBioEnrollment
from fido2.ctap2.pin import ClientPin
from hypothesis import given, settings
from hypothesis import strategies as st

from keyctl.authenticator import (
    FakeClock,
    SampleStatus,
    ScriptedSensor,
    UvMode,
    VirtualAuthenticator,
    new_state,
    store,
)
from keyctl.authenticator import cbor as device_cbor
from keyctl.authenticator.pin import Permission, Protocol, Token
from tests.authenticator.conftest import Transport
from tests.authenticator.test_fuzz import STATUSES, cbor_values

ERR = CtapError.ERR
FEEDBACK = FPBioEnrollment.FEEDBACK
PIN = "1234"


def _bio(
    transport: Transport, sensor: ScriptedSensor | None = None
) -> tuple[Ctap2, ClientPin, FPBioEnrollment]:
    ctap = Ctap2(
        transport(VirtualAuthenticator(new_state(uv=UvMode.FINGERPRINT), pin_code=PIN, sensor=sensor))
    )
    client_pin = ClientPin(ctap)
    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.BIO_ENROLL)
    return ctap, client_pin, FPBioEnrollment(ctap, client_pin.protocol, token)


def test_sensor_info_and_get_info(transport: Transport) -> None:
    ctap, _, bio = _bio(transport, ScriptedSensor(samples_required=3))
    assert ctap.info.options["bioEnroll"] is False
    assert ctap.info.options["uvBioEnroll"] is True
    assert ctap.info.uv_modality == 0x02
    assert bio.get_modality() == BioEnrollment.MODALITY.FINGERPRINT
    info = bio.get_fingerprint_sensor_info()
    assert info[BioEnrollment.RESULT.FINGERPRINT_KIND] == 1
    assert info[BioEnrollment.RESULT.MAX_SAMPLES_REQUIRED] == 3
    assert info[BioEnrollment.RESULT.MAX_TEMPLATE_FRIENDLY_NAME] == 32
    assert bio.enumerate_enrollments() == {}  # INVALID_OPTION when empty, which fido2 turns into {}


def test_enroll_with_a_failing_sample_then_rename_and_remove(transport: Transport) -> None:
    sensor = ScriptedSensor(samples_required=4)
    sensor.script(SampleStatus.GOOD, SampleStatus.TOO_FAST)
    ctap, _, bio = _bio(transport, sensor)
    template_id, status, remaining = bio.enroll_begin()
    assert (status, remaining) == (FEEDBACK.FP_GOOD, 3)
    # the failed sample counts for nothing
    assert bio.enroll_capture_next(template_id) == (FEEDBACK.FP_TOO_FAST, 3)
    assert bio.enroll_capture_next(template_id) == (FEEDBACK.FP_GOOD, 2)
    assert bio.enumerate_enrollments() == {}  # not stored before the last sample
    assert bio.enroll_capture_next(template_id) == (FEEDBACK.FP_GOOD, 1)
    assert bio.enroll_capture_next(template_id) == (FEEDBACK.FP_GOOD, 0)
    assert bio.enumerate_enrollments() == {template_id: ""}
    assert ctap.get_info().options["bioEnroll"] is True
    # the enrollment is over: no more samples for it
    with pytest.raises(CtapError) as raised:
        bio.enroll_capture_next(template_id)
    assert raised.value.code == ERR.INVALID_PARAMETER

    bio.set_name(template_id, "left thumb")
    assert bio.enumerate_enrollments() == {template_id: "left thumb"}
    with pytest.raises(CtapError) as raised:
        bio.set_name(template_id, "x" * 33)
    assert raised.value.code == ERR.INVALID_PARAMETER
    bio.remove_enrollment(template_id)
    assert bio.enumerate_enrollments() == {}
    assert ctap.get_info().options["bioEnroll"] is False
    with pytest.raises(CtapError) as raised:
        bio.remove_enrollment(template_id)
    assert raised.value.code == ERR.INVALID_PARAMETER


def test_enrollment_context_raises_on_a_bad_sample(transport: Transport) -> None:
    sensor = ScriptedSensor(samples_required=2, script=[SampleStatus.POOR_QUALITY])
    _, _, bio = _bio(transport, sensor)
    context = bio.enroll()
    with pytest.raises(CaptureError) as raised:
        context.capture()
    assert raised.value.code == FEEDBACK.FP_POOR_QUALITY
    assert context.remaining == 2
    assert context.capture() is None
    assert context.capture() == context.template_id
    assert list(bio.enumerate_enrollments()) == [context.template_id]


def test_cancel_ends_the_enrollment(transport: Transport) -> None:
    _, _, bio = _bio(transport)
    template_id, _, remaining = bio.enroll_begin()
    assert remaining == 3
    bio.enroll_cancel()
    with pytest.raises(CtapError) as raised:
        bio.enroll_capture_next(template_id)
    assert raised.value.code == ERR.INVALID_PARAMETER
    assert bio.enumerate_enrollments() == {}


def test_no_finger_times_out(transport: Transport) -> None:
    sensor = ScriptedSensor(script=[None])
    _, _, bio = _bio(transport, sensor)
    with pytest.raises(CtapError) as raised:
        bio.enroll_begin()
    assert raised.value.code == ERR.USER_ACTION_TIMEOUT
    assert bio.enumerate_enrollments() == {}


def test_authorization(transport: Transport) -> None:
    ctap, client_pin, bio = _bio(transport)
    # no pinUvAuthParam
    with pytest.raises(CtapError) as raised:
        ctap.bio_enrollment(modality=1, sub_cmd=FPBioEnrollment.CMD.ENUMERATE_ENROLLMENTS)
    assert raised.value.code == ERR.PUAT_REQUIRED
    # a param made with the wrong token
    forged = FPBioEnrollment(ctap, client_pin.protocol, b"\x01" * 32)
    with pytest.raises(CtapError) as raised:
        forged.enroll_begin()
    assert raised.value.code == ERR.PIN_AUTH_INVALID
    # a genuine token without the be permission
    credman_token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    without = FPBioEnrollment(ctap, client_pin.protocol, credman_token)
    with pytest.raises(CtapError) as raised:
        without.enumerate_enrollments()
    assert raised.value.code == ERR.PIN_AUTH_INVALID
    # the old token was replaced by the new one
    with pytest.raises(CtapError) as raised:
        bio.enroll_begin()
    assert raised.value.code == ERR.PIN_AUTH_INVALID
    # built-in UV with no finger enrolled is not configured (CTAP 2.1 §6.5.5.7.3 step 5)
    with pytest.raises(CtapError) as raised:
        client_pin.get_uv_token(ClientPin.PERMISSION.BIO_ENROLL)
    assert raised.value.code == ERR.NOT_ALLOWED
    # once a finger is enrolled, a token from built-in UV may carry be (uvBioEnroll)
    pin_token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.BIO_ENROLL)
    template_id = _enroll(FPBioEnrollment(ctap, client_pin.protocol, pin_token))
    uv_token = client_pin.get_uv_token(ClientPin.PERMISSION.BIO_ENROLL)
    assert list(FPBioEnrollment(ctap, client_pin.protocol, uv_token).enumerate_enrollments()) == [template_id]


def _enroll(bio: FPBioEnrollment) -> bytes:
    context = bio.enroll()
    for _ in range(10):
        template_id = context.capture()
        if template_id is not None:
            return template_id
    raise AssertionError("the enrollment never finished")


MC_ARGS = (bytes(32), {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}])


def test_a_sensor_without_a_finger_reports_uv_false(transport: Transport) -> None:
    """CTAP 2.1 §6.4: built-in UV that is not yet configured reports uv: false; python-fido2's device
    suite refuses to start on a key with uv: true."""
    ctap, _, bio = _bio(transport)
    options = ctap.info.options
    assert (options["uv"], options["bioEnroll"], options["uvBioEnroll"]) == (False, False, True)
    with pytest.raises(CtapError) as raised:  # §6.1.2 step 5: uv asked of a method not yet enabled
        ctap.make_credential(*MC_ARGS, options={"uv": True})
    assert raised.value.code == ERR.INVALID_OPTION
    _enroll(bio)
    assert (ctap.get_info().options["uv"], ctap.get_info().options["bioEnroll"]) == (True, True)
    assert ctap.make_credential(*MC_ARGS, options={"uv": True}).auth_data.is_user_verified()


def test_uv_auto_is_built_in_uv_without_a_sensor(transport: Transport) -> None:
    """``--uv auto``: verification that needs no enrollment (on-device passcode entry, modality 0x04)."""
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(uv=UvMode.AUTO))))
    assert ctap.info.options["uv"] is True
    assert "bioEnroll" not in ctap.info.options
    assert "uvBioEnroll" not in ctap.info.options
    assert ctap.info.uv_modality == 0x04
    assert not BioEnrollment.is_supported(ctap.info)
    assert ctap.make_credential(*MC_ARGS, options={"uv": True}).auth_data.is_user_verified()


def test_unknown_modality_and_subcommand(transport: Transport) -> None:
    ctap, _, _ = _bio(transport)
    with pytest.raises(CtapError) as raised:
        ctap.bio_enrollment(modality=2, sub_cmd=FPBioEnrollment.CMD.GET_SENSOR_INFO)
    assert raised.value.code == ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as raised:
        ctap.bio_enrollment(modality=1, sub_cmd=0x42, pin_uv_protocol=2, pin_uv_param=b"\0" * 32)
    assert raised.value.code == ERR.INVALID_SUBCOMMAND


def test_a_key_without_a_sensor(transport: Transport) -> None:
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(uv=UvMode.NONE), pin_code=PIN)))
    assert "bioEnroll" not in ctap.info.options
    assert not BioEnrollment.is_supported(ctap.info)
    with pytest.raises(CtapError) as raised:
        ClientPin(ctap).get_pin_token(PIN, ClientPin.PERMISSION.BIO_ENROLL)
    assert raised.value.code == ERR.UNAUTHORIZED_PERMISSION
    with pytest.raises(CtapError) as raised:
        ctap.send_cbor(Ctap2.CMD.BIO_ENROLLMENT, {6: True})
    assert raised.value.code == ERR.INVALID_COMMAND


def test_database_full(transport: Transport) -> None:
    _, _, bio = _bio(transport, ScriptedSensor(samples_required=1))
    enrolled = set()
    for _ in range(5):
        template_id, _, remaining = bio.enroll_begin()
        assert remaining == 0
        enrolled.add(template_id)
    assert len(enrolled) == 5
    assert set(bio.enumerate_enrollments()) == enrolled
    with pytest.raises(CtapError) as raised:
        bio.enroll_begin()
    assert raised.value.code == ERR.FP_DATABASE_FULL


def test_templates_survive_in_the_encrypted_state_and_reset_clears_them(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    store.create("bio", new_state(uv=UvMode.FINGERPRINT))
    authenticator = VirtualAuthenticator(store.FileStore("bio"), sensor=ScriptedSensor(samples_required=1))
    ctap = Ctap2(transport(authenticator))
    client_pin = ClientPin(ctap)
    client_pin.set_pin(PIN)
    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.BIO_ENROLL)
    bio = FPBioEnrollment(ctap, client_pin.protocol, token)
    template_id, _, _ = bio.enroll_begin()
    bio.set_name(template_id, "index")

    reopened = VirtualAuthenticator(store.FileStore("bio"))
    with reopened.store.transaction() as state:
        assert [(t.template_id, t.name) for t in state.templates] == [(template_id, "index")]
    reopened_ctap = Ctap2(transport(reopened))
    assert reopened_ctap.info.options["bioEnroll"] is True
    reopened_ctap.reset()
    assert reopened_ctap.get_info().options["bioEnroll"] is False


def test_built_in_uv_reads_the_sensor_once_a_finger_is_enrolled(transport: Transport) -> None:
    sensor = ScriptedSensor(samples_required=1)
    ctap, client_pin, bio = _bio(transport, sensor)
    bio.enroll_begin()
    sensor.script(SampleStatus.POOR_QUALITY)
    with pytest.raises(CtapError) as raised:
        client_pin.get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, "example.com")
    assert raised.value.code == ERR.UV_INVALID
    assert client_pin.get_uv_retries() == 7
    sensor.script(None)
    with pytest.raises(CtapError) as raised:
        client_pin.get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, "example.com")
    assert raised.value.code == ERR.USER_ACTION_TIMEOUT
    assert client_pin.get_uv_retries() == 7  # nobody touched: not a failed match
    assert client_pin.get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, "example.com")
    assert client_pin.get_uv_retries() == 8
    # makeCredential with the uv option goes through the same sensor
    sensor.script(SampleStatus.TOO_SKEWED)
    with pytest.raises(CtapError) as raised:
        ctap.make_credential(
            bytes(32),
            {"id": "example.com"},
            {"id": b"u"},
            [{"type": "public-key", "alg": -7}],
            options={"uv": True},
        )
    assert raised.value.code == ERR.UV_INVALID


FUZZED = VirtualAuthenticator(
    new_state(uv=UvMode.FINGERPRINT),
    pin_code=PIN,
    sensor=ScriptedSensor(samples_required=2),
    clock=FakeClock(),
)
FUZZ_TOKEN = bytes(range(32))


@settings(max_examples=80, deadline=None)
@given(
    request=st.fixed_dictionaries(
        {},
        optional={
            1: st.sampled_from([1, 2]) | cbor_values,
            2: st.integers(0, 8) | cbor_values,
            3: st.dictionaries(st.integers(1, 3), cbor_values, max_size=3) | cbor_values,
            4: st.sampled_from([1, 2]) | cbor_values,
            5: st.binary(min_size=16, max_size=32) | cbor_values,
            6: st.booleans() | cbor_values,
        },
    ),
    sign=st.booleans(),
)
def test_malformed_requests_get_a_status_never_an_exception(request: dict[int, object], sign: bool) -> None:
    """With ``sign`` the pinUvAuthParam is valid, so the subcommands' own parsing is reached."""
    FUZZED.token = Token(FUZZ_TOKEN, Permission.BIO_ENROLL, None, FUZZED.clock.monotonic())
    sub, sub_params = request.get(2), request.get(3)
    if sign and isinstance(sub, int) and 0 <= sub <= 255:
        message = bytes([1, sub]) + (device_cbor.encode(sub_params) if sub_params is not None else b"")
        request[4] = 2
        request[5] = Protocol(2).authenticate(FUZZ_TOKEN, message)
    response = FUZZED.handle(bytes([0x09]) + device_cbor.encode(request))
    assert response[0] in STATUSES
