"""The platform bridges. These machines run Linux only: the Linux path runs for real; the macOS path runs
against a faked sys.platform; the Windows bridge runs python-fido2's real fido2.client.windows code
against a fake webauthn.dll (tests/platform/webauthn_dll.py) in front of keyctl's virtual authenticator.
None of this has run on real Windows or macOS."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector
from fido2.webauthn import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

import webauthn as py_webauthn
from keyctl import platform
from keyctl.authenticator import Policy, PresenceMode, VirtualAuthenticator
from keyctl.errors import (
    CredentialExcluded,
    ExitCode,
    KeyctlError,
    NoCredential,
    NoDevice,
    NotSupported,
    PasskeyCanceled,
    PasskeyTimeout,
)
from tests.platform import webauthn_dll as dll_codes
from tests.platform.conftest import Windows
from tests.platform.webauthn_dll import FakeWebAuthnDll, GetAssertionCall, MakeCredentialCall
from tests.webauthn.conftest import PASSWORD, Reference

COLLECTOR = DefaultClientDataCollector("https://example.com")
Cli = Callable[..., Any]


def test_linux_explains_and_points_elsewhere() -> None:
    assert sys.platform == "linux"
    found = platform.status()
    assert (found.available, found.routes_usb) == (False, False)
    assert "Linux has no platform authenticator" in found.detail
    for attempt in (platform.authenticator, lambda: platform.platform_client(COLLECTOR)):
        with pytest.raises(NotSupported) as raised:
            attempt()
        assert raised.value.exit_code == ExitCode.NOT_SUPPORTED
        assert raised.value.message.startswith("Passkeys not supported on this device")
        assert "virtual:NAME" in raised.value.remedy
    assert platform.usb_route() is None


def test_macos_names_the_missing_entitlements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(NotSupported, match="entitlement"):
        platform.platform_client(COLLECTOR)
    with pytest.raises(NotSupported, match="entitlement"):
        platform.authenticator()
    assert not platform.status().available


def test_windows_hello_and_usb_routing_without_admin(windows: Windows, cli: Cli) -> None:
    windows(FakeWebAuthnDll(4), admin=False)
    found = platform.status()
    assert found.available
    assert "API version 4" in found.detail
    assert found.routes_usb
    from keyctl.platform.windows import HelloClient

    assert isinstance(platform.platform_client(COLLECTOR), HelloClient)
    routed = platform.usb_route()
    assert routed is not None
    assert isinstance(routed.client(COLLECTOR), HelloClient)
    result = cli("doctor", "--json")
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "platform authenticator")
    assert check["status"] == "ok"
    assert "USB keys go through Windows too" in check["detail"]


def test_windows_as_admin_keeps_raw_hid_for_usb(windows: Windows) -> None:
    windows(FakeWebAuthnDll(4), admin=True)
    assert platform.status().available
    assert not platform.status().routes_usb
    assert platform.usb_route() is None


def test_windows_without_webauthn_dll(windows: Windows) -> None:
    windows(None)
    assert not platform.status().available
    with pytest.raises(NotSupported, match=r"webauthn\.dll is missing"):
        platform.platform_client(COLLECTOR)
    with pytest.raises(NotSupported, match=r"webauthn\.dll is missing"):
        platform.authenticator()


def test_doctor_reports_the_platform(cli: Cli) -> None:
    result = cli("doctor", "--json")
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "platform authenticator")
    assert check["status"] == "info"
    assert "Linux" in check["detail"]


def _plain(response: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in dict(response).items()}


@pytest.mark.parametrize("api_version", [1, 4, 9])
def test_make_credential_and_get_assertion_are_marshalled_through_the_dll(
    windows: Windows, api_version: int
) -> None:
    """fido2's WindowsClient builds the structures for each API version; the fake DLL reads them from
    memory, the virtual authenticator answers, and py_webauthn verifies what comes back."""
    dll = windows(FakeWebAuthnDll(api_version))
    assert dll is not None
    client = platform.platform_client(COLLECTOR)
    challenge = os.urandom(32)
    excluded = os.urandom(16)
    creation = PublicKeyCredentialCreationOptions(
        rp=PublicKeyCredentialRpEntity(name="Example", id="example.com"),
        user=PublicKeyCredentialUserEntity(name="ana@example.com", id=b"user-ana", display_name="Ana"),
        challenge=challenge,
        pub_key_cred_params=[
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7),
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-257),
        ],
        timeout=30_000,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=excluded)
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    registration = client.make_credential(creation, threading.Event())

    made = dll.calls[0]
    assert isinstance(made, MakeCredentialCall)
    assert (made.rp_id, made.rp_name) == ("example.com", "Example")
    assert (made.user_id, made.user_name, made.user_display_name) == (b"user-ana", "ana@example.com", "Ana")
    assert made.algorithms == (-7, -257)
    assert made.credential_types == ("public-key", "public-key")
    assert made.client_data["type"] == "webauthn.create"
    assert made.client_data["origin"] == "https://example.com"
    assert made.hash_algorithm == "SHA-256"
    assert (made.timeout_ms, made.require_resident_key, made.user_verification) == (30_000, True, 1)
    assert made.exclude == (excluded,)
    assert made.cancellation_id in dll.cancellation_ids
    verified = py_webauthn.verify_registration_response(
        credential=json.dumps(_plain(registration)),
        expected_challenge=challenge,
        expected_origin="https://example.com",
        expected_rp_id="example.com",
        require_user_verification=True,
    )
    assert verified.credential_id == registration.raw_id

    challenge = os.urandom(32)
    request = PublicKeyCredentialRequestOptions(
        challenge=challenge,
        timeout=20_000,
        rp_id="example.com",
        allow_credentials=[
            PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=registration.raw_id)
        ],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    assertion = client.get_assertion(request, threading.Event()).get_response(0)
    got = dll.calls[1]
    assert isinstance(got, GetAssertionCall)
    assert (got.rp_id, got.allow, got.timeout_ms, got.user_verification) == (
        "example.com",
        (registration.raw_id,),
        20_000,
        2,
    )
    assert got.client_data["type"] == "webauthn.get"
    authenticated = py_webauthn.verify_authentication_response(
        credential=json.dumps(_plain(assertion)),
        expected_challenge=challenge,
        expected_origin="https://example.com",
        expected_rp_id="example.com",
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=verified.sign_count,
        require_user_verification=True,
    )
    assert authenticated.new_sign_count > verified.sign_count
    assert assertion.response.user_handle == b"user-ana"  # discoverable: the user id comes back
    # Every answer the DLL handed out was freed exactly once (fido2 calls WebAuthNFree*).
    assert (dll.live, dll.bad_frees) == ({}, [])


def _sign_up(reference: Reference, email: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reference.account(email).close()
    monkeypatch.setenv("PW", PASSWORD)
    monkeypatch.setenv("RC", reference.recovery[email])


def _register(cli: Cli, reference: Reference, email: str, *extra: str) -> Any:
    return cli(
        "register", "--server", reference.url, "--user", email, "--password-env", "PW",
        "--recovery-code-env", "RC", "--authenticator", "platform", "--json", *extra,
    )  # fmt: skip


def test_register_then_login_with_windows_hello_against_the_reference_server(
    cli: Cli, reference: Reference, windows: Windows, monkeypatch: pytest.MonkeyPatch
) -> None:
    dll = windows(FakeWebAuthnDll(4))
    assert dll is not None
    _sign_up(reference, "hana@example.com", monkeypatch)
    registered = _register(cli, reference, "hana@example.com", "--resident", "--name", "Hello")
    assert registered.exit_code == 0, registered.stderr
    answer = json.loads(registered.stdout)
    assert (answer["verified"], answer["authenticator"]) == (True, "platform")
    assert answer["server"]["passkey"]["name"] == "Hello"
    made = dll.calls[0]
    assert isinstance(made, MakeCredentialCall)
    assert (made.rp_id, made.user_name, made.require_resident_key) == (
        answer["rp_id"],
        "hana@example.com",
        True,
    )
    assert made.client_data["origin"] == reference.url
    assert made.timeout_ms == 60_000  # keyctl's --timeout default reaches Windows

    # A discoverable login (no --user: empty allow list), then one for the named user (allow list).
    for args in ((), ("--user", "hana@example.com")):
        result = cli("login", "--server", reference.url, "--authenticator", "platform", "--json", *args)
        assert result.exit_code == 0, result.stderr
        login = json.loads(result.stdout)
        assert (login["verified"], login["user"], login["method"]) == (True, "hana@example.com", "passkey")
        assert login["credential_id"] == answer["credential_id"]
        assert login["server"]["status"] == "signed_in"
    first, second = dll.calls[1:]
    assert isinstance(first, GetAssertionCall)
    assert isinstance(second, GetAssertionCall)
    assert first.allow == ()
    assert len(second.allow) == 1
    assert (dll.live, dll.bad_frees) == ({}, [])


def test_usb_keys_go_through_windows_without_admin_rights(
    cli: Cli, reference: Reference, windows: Windows, monkeypatch: pytest.MonkeyPatch
) -> None:
    dll = windows(FakeWebAuthnDll(4), admin=False)
    assert dll is not None
    _sign_up(reference, "jon@example.com", monkeypatch)
    assert _register(cli, reference, "jon@example.com").exit_code == 0
    result = cli(
        "login", "--server", reference.url, "--user", "jon@example.com", "--authenticator", "usb", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True
    assert [type(call) for call in dll.calls] == [MakeCredentialCall, GetAssertionCall]


def test_as_admin_usb_keys_are_opened_directly(
    cli: Cli, reference: Reference, windows: Windows, monkeypatch: pytest.MonkeyPatch
) -> None:
    dll = windows(FakeWebAuthnDll(4), admin=True)
    assert dll is not None
    _sign_up(reference, "kim@example.com", monkeypatch)
    assert _register(cli, reference, "kim@example.com").exit_code == 0
    monkeypatch.setattr("fido2.hid.list_devices", lambda: iter(()))  # no key plugged in
    result = cli("login", "--server", reference.url, "--user", "kim@example.com", "--authenticator", "usb")
    assert result.exit_code == ExitCode.NO_DEVICE, result.stderr
    assert [type(call) for call in dll.calls] == [MakeCredentialCall]


def test_cancel_in_the_windows_dialog(
    cli: Cli, reference: Reference, windows: Windows, monkeypatch: pytest.MonkeyPatch
) -> None:
    dll = windows(FakeWebAuthnDll(4))
    assert dll is not None
    dll.cancel = True
    _sign_up(reference, "ivan@example.com", monkeypatch)
    result = _register(cli, reference, "ivan@example.com")
    assert result.exit_code == ExitCode.PASSKEY_CANCELED, result.stderr
    assert "Passkey setup canceled" in result.stderr
    assert len(dll.calls) == 1
    # Nothing was registered: a passkey login for the account has no credential to offer.
    result = cli(
        "login", "--server", reference.url, "--user", "ivan@example.com", "--authenticator", "platform"
    )
    assert result.exit_code == ExitCode.NO_CREDENTIAL, result.stderr
    assert len(dll.calls) == 1  # refused before Windows was asked


@pytest.mark.parametrize(
    ("policy", "code", "words"),
    [
        (Policy(presence=PresenceMode.DENY), ExitCode.PASSKEY_CANCELED, "Request canceled"),
        (
            Policy(presence=PresenceMode.TIMEOUT, presence_timeout_s=0.3),
            ExitCode.TIMEOUT,
            "Passkey request timed out",
        ),
    ],
)
def test_the_authenticator_refusing_behind_windows(
    cli: Cli,
    reference: Reference,
    windows: Windows,
    monkeypatch: pytest.MonkeyPatch,
    policy: Policy,
    code: ExitCode,
    words: str,
) -> None:
    dll = windows(FakeWebAuthnDll(4))
    assert dll is not None
    _sign_up(reference, "jo@example.com", monkeypatch)
    assert _register(cli, reference, "jo@example.com").exit_code == 0
    dll.authenticator = VirtualAuthenticator(dll.authenticator.store, policy=policy)
    result = cli(
        "login", "--server", reference.url, "--user", "jo@example.com", "--authenticator", "platform"
    )
    assert result.exit_code == code, result.stderr
    assert words in result.stderr


def test_an_excluded_or_unknown_credential_behind_windows(
    cli: Cli, reference: Reference, windows: Windows, monkeypatch: pytest.MonkeyPatch
) -> None:
    dll = windows(FakeWebAuthnDll(4))
    assert dll is not None
    _sign_up(reference, "kim@example.com", monkeypatch)
    first = _register(cli, reference, "kim@example.com")
    assert first.exit_code == 0, first.stderr
    monkeypatch.setenv("RC", json.loads(first.stdout)["recovery_code"])  # the old one was used
    again = _register(cli, reference, "kim@example.com")
    assert again.exit_code == ExitCode.CREDENTIAL_EXCLUDED, again.stderr
    assert "Passkey already registered for this device" in again.stderr
    dll.authenticator = VirtualAuthenticator()  # another computer's Windows Hello
    other = cli(
        "login", "--server", reference.url, "--user", "kim@example.com", "--authenticator", "platform"
    )
    assert other.exit_code == ExitCode.NO_CREDENTIAL, other.stderr
    assert "Passkey not found on this device" in other.stderr


@pytest.mark.parametrize(
    ("hresult", "registering", "expected", "words"),
    [
        (dll_codes.NTE_USER_CANCELLED, True, PasskeyCanceled, "Passkey setup canceled"),
        (dll_codes.NTE_USER_CANCELLED, False, PasskeyCanceled, "Request canceled"),
        (dll_codes.ERROR_CANCELLED, False, PasskeyCanceled, "Request canceled"),
        (dll_codes.ERROR_TIMEOUT, False, PasskeyTimeout, "timed out (no touch within 7 s)"),
        (dll_codes.NTE_EXISTS, True, CredentialExcluded, "already registered"),
        (dll_codes.NTE_NOT_FOUND, False, NoCredential, "Passkey not found"),
        (dll_codes.NTE_TOKEN_KEYSET_STORAGE_FULL, True, NotSupported, "no room"),
        (dll_codes.NTE_DEVICE_NOT_FOUND, False, NoDevice, "Windows found no authenticator"),
        (dll_codes.NTE_NOT_SUPPORTED, True, NotSupported, "HRESULT 0x80090029"),
        (dll_codes.E_FAIL, False, NotSupported, "HRESULT 0x80004005"),
    ],
)
def test_hresults_become_catalogue_errors(
    hresult: int, registering: bool, expected: type[KeyctlError], words: str
) -> None:
    from keyctl.platform.windows import from_hresult

    signed = hresult - (1 << 32)  # ctypes gives a failed HRESULT as a negative winerror
    for value in (hresult, signed):
        error = from_hresult(value, registering, 7.0)
        assert type(error) is expected
        assert words in error.message
