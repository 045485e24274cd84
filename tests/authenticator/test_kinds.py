"""Authenticator kinds (security-key, synced, platform) as py_webauthn sees them through fido2's client:
backup flags, signature counter, attestation, discoverability, user verification, getInfo; and
`keyctl virtual create --kind` with the provider named by a maintained source."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fido2.ctap2 import Ctap2
from webauthn.helpers.structs import CredentialDeviceType

from keyctl.audit import providers
from keyctl.authenticator import AttestationMode, CounterMode, UvMode, VirtualAuthenticator, new_state
from keyctl.authenticator import store as virtual_store
from keyctl.authenticator.state import Kind
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from tests.authenticator import rp
from tests.authenticator.conftest import Transport
from tests.conftest import Result

Cli = Callable[..., Result]


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_registers_and_signs_in_as_py_webauthn_expects(transport: Transport, kind: Kind) -> None:
    authenticator = VirtualAuthenticator(new_state(kind=kind))
    device = transport(authenticator)
    # What a relying party asks by default: attestation if any, no discoverable credential, UV preferred.
    registered = rp.register(device, attestation="direct", user_verification="preferred")
    verified = registered.verified
    synced = kind is Kind.SYNCED
    expected_type = CredentialDeviceType.MULTI_DEVICE if synced else CredentialDeviceType.SINGLE_DEVICE
    assert verified.credential_device_type == expected_type
    assert verified.credential_backed_up is synced
    assert verified.user_verified is True  # UV built in (a security key here: its simulated fingerprint)
    assert registered.fmt == "none"  # asked for "direct": none of the kinds was made with attestation
    with authenticator.store.transaction() as state:
        held = [c.credential_id for c in state.credentials]
    # Platforms and providers keep every passkey on the device, even when the RP did not ask for it.
    assert held == ([] if kind is Kind.SECURITY_KEY else [registered.credential_id])
    count = registered.sign_count
    assert (count == 0) is synced
    for _ in range(2):
        challenge, options = rp.request_options([registered.credential_id])
        response = rp.authenticate_response(device, options)
        new_count = rp.verify_assertion(response, challenge, registered, count)
        assert new_count == 0 if synced else new_count > count
        count = new_count
    if kind is not Kind.SECURITY_KEY:  # username-less sign-in with the passkey the RP never asked to store
        challenge, options = rp.request_options(None)
        response = rp.authenticate_response(device, options)
        assert rp.verify_assertion(response, challenge, registered, count) == (0 if synced else count + 1)


def test_security_key_without_uv_request_is_not_verified(transport: Transport) -> None:
    """The contrast that shows 'UV built in' is the kinds' doing: a security key asked to skip UV skips it,
    a platform authenticator verifies the user anyway (as Windows Hello does)."""
    key = rp.register(transport(VirtualAuthenticator(new_state())), user_verification="discouraged")
    assert key.verified.user_verified is False
    platform = transport(VirtualAuthenticator(new_state(kind=Kind.PLATFORM)))
    assert rp.register(platform, user_verification="discouraged").verified.user_verified is True


@pytest.mark.parametrize("kind", [Kind.PLATFORM, Kind.SYNCED])
def test_a_command_without_uv_evidence_is_verified_by_an_always_uv_kind(
    transport: Transport, kind: Kind
) -> None:
    """A client that sends neither a token nor the uv option (a CTAP 2.0 host, a raw command) still gets a
    verified user from a platform or provider (alwaysUv with UV built in, CTAP 2.1 §6.1.2 step 6), and the
    UV flag says so: a relying party requiring verification accepts the sign-in."""
    ctap = Ctap2(transport(VirtualAuthenticator(new_state(kind=kind))))
    cdh = bytes(32)
    made = ctap.make_credential(cdh, {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}])
    assert made.auth_data.is_user_verified()
    credential = {"type": "public-key", "id": made.auth_data.credential_data.credential_id}  # type: ignore[union-attr]
    assert ctap.get_assertion("example.com", cdh, [credential]).auth_data.is_user_verified()


@pytest.mark.parametrize(
    ("kind", "transports", "plat"),
    [
        (Kind.SECURITY_KEY, ["usb"], False),
        (Kind.SYNCED, ["hybrid", "internal"], True),
        (Kind.PLATFORM, ["internal"], True),
    ],
)
def test_get_info_describes_the_kind(
    transport: Transport, kind: Kind, transports: list[str], plat: bool
) -> None:
    info = Ctap2(transport(VirtualAuthenticator(new_state(kind=kind)))).get_info()
    assert info.transports == transports
    assert info.options["plat"] is plat
    assert info.options["uv"] is True
    assert info.options["alwaysUv"] is plat  # platforms and providers always verify the user
    assert "bioEnroll" not in info.options  # only a key with a sensor (uv fingerprint) enrolls over CTAP


@pytest.mark.parametrize(
    ("kind", "setting"),
    [
        (Kind.SYNCED, {"counter_mode": CounterMode.GLOBAL}),
        (Kind.SYNCED, {"attestation_mode": AttestationMode.X5C}),
        (Kind.PLATFORM, {"attestation_mode": AttestationMode.SELF}),
        (Kind.PLATFORM, {"uv": UvMode.NONE}),
        (Kind.PLATFORM, {"uv": UvMode.FINGERPRINT}),  # a platform enrolls fingers in its OS
    ],
)
def test_settings_a_kind_cannot_have_are_refused(kind: Kind, setting: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=kind.value):
        new_state(kind=kind, **setting)  # type: ignore[arg-type]


def test_provider_names_come_from_the_maintained_sources() -> None:
    from keyctl.audit import mds

    metadata = mds.bundled_fallback()
    assert metadata is not None
    synced = providers.name_of(str(Kind.SYNCED.provider_aaguid), metadata)
    assert synced == providers.Named("Google Password Manager", providers.COMMUNITY_SOURCE)  # not in MDS
    platform = providers.name_of(str(Kind.PLATFORM.provider_aaguid), metadata)
    assert platform is not None
    assert platform.name == "Windows Hello Hardware Authenticator"
    assert platform.source.startswith("FIDO metadata")
    assert providers.name_of(str(Kind.PLATFORM.provider_aaguid), None) == providers.Named(
        "Windows Hello", providers.COMMUNITY_SOURCE
    )
    assert providers.name_of("00000000-0000-0000-0000-000000000001", metadata) is None


@pytest.fixture
def ci_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = virtual_store.new_ci_key()
    monkeypatch.setenv(virtual_store.ENV_VIRTUAL_KEY, key)
    return key


def test_cli_create_kinds_and_info(cli: Cli, ci_key: str) -> None:
    assert cli("virtual", "create", "phone", "--kind", "synced").exit_code == 0
    info = json.loads(cli("virtual", "info", "phone", "--json").stdout)
    assert info["kind"] == "synced"
    assert info["aaguid"] == Kind.SYNCED.provider_aaguid
    assert info["model"] == "Google Password Manager"
    assert info["model_source"] == providers.COMMUNITY_SOURCE
    assert (info["backup_eligible"], info["backed_up"], info["counter"]) == (True, True, "zero")
    assert info["transports"] == ["hybrid", "internal"]
    assert Ctap2(open_device("virtual:phone")).get_info().options["plat"] is True

    aaguid = "bada5566-a7aa-401f-bd96-45619a55120d"
    assert cli("virtual", "create", "vault", "--kind", "synced", "--aaguid", aaguid).exit_code == 0
    assert json.loads(cli("virtual", "info", "vault", "--json").stdout)["model"] == "1Password"

    assert cli("virtual", "create", "laptop", "--kind", "platform").exit_code == 0
    laptop = json.loads(cli("virtual", "info", "laptop", "--json").stdout)
    assert (laptop["kind"], laptop["backup_eligible"]) == ("platform", False)
    assert laptop["transports"] == ["internal"]
    assert laptop["aaguid"] == Kind.PLATFORM.provider_aaguid

    key = json.loads(cli("virtual", "info", "phone", "--json").stdout)  # unchanged by the others
    assert key["kind"] == "synced"
    plain = cli("virtual", "create", "yubi")
    assert plain.exit_code == 0
    assert json.loads(cli("virtual", "info", "yubi", "--json").stdout)["kind"] == "security-key"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--kind", "synced", "--counter", "global"], "--kind synced: a synced passkey's signature counter"),
        (["--kind", "platform", "--attestation", "x5c"], "--kind platform: a platform authenticator attests"),
        (["--kind", "synced", "--uv", "none"], "--kind synced: a synced authenticator has user verification"),
    ],
)
def test_cli_refuses_what_the_kind_cannot_do(cli: Cli, ci_key: str, args: list[str], said: str) -> None:
    result = cli("virtual", "create", "x", *args)
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert said in result.stderr
    assert cli("virtual", "list", "--json").stdout.strip() == "[]"  # nothing written


def test_a_state_from_before_kinds_loads_as_a_security_key() -> None:
    from keyctl.authenticator import cbor
    from keyctl.authenticator.state import AuthenticatorState

    data = cbor.decode(new_state(kind=Kind.SYNCED).to_bytes())
    del data["kind"], data["syncBases"]
    old = AuthenticatorState.from_bytes(cbor.encode(data))
    assert (old.kind, old.sync_bases) == (Kind.SECURITY_KEY, {})
    synced = new_state(kind=Kind.SYNCED)
    synced.sync_bases["laptop"] = [b"\x01" * 16]
    again = AuthenticatorState.from_bytes(synced.to_bytes())
    assert (again.kind, again.sync_bases) == (Kind.SYNCED, {"laptop": [b"\x01" * 16]})


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_s_assertions_carry_its_backup_flags_to_py_webauthn(
    transport: Transport, kind: Kind
) -> None:
    """Not only the registration: every assertion says backup-eligible and backed up as the kind is, read by
    py_webauthn from the signed authenticator data (username-first and, for passkeys, username-less)."""
    from webauthn import verify_authentication_response

    device = transport(VirtualAuthenticator(new_state(kind=kind)))
    registered = rp.register(device, resident=True, user_verification="preferred")
    synced = kind is Kind.SYNCED
    expected_type = CredentialDeviceType.MULTI_DEVICE if synced else CredentialDeviceType.SINGLE_DEVICE
    count = registered.sign_count
    for allowed in ([registered.credential_id], None):
        challenge, options = rp.request_options(allowed)
        verified = verify_authentication_response(
            credential=rp.authenticate_response(device, options),
            expected_challenge=challenge,
            expected_rp_id=rp.RP_ID,
            expected_origin=rp.ORIGIN,
            credential_public_key=registered.public_key,
            credential_current_sign_count=count,
        )
        assert verified.credential_device_type == expected_type
        assert verified.credential_backed_up is synced
        assert (verified.new_sign_count == 0) is synced
        count = verified.new_sign_count
