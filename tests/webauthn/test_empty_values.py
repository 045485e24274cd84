"""Empty strings and byte strings reach the authenticator as CBOR text and byte strings (issue #13 item 1).

python-fido2 2.2.1 serialises an empty ``str``/``bytes`` field of its data classes as an empty CBOR array
(keyctl.fido2_fixes). These tests record the CTAPHID CBOR messages on their way to the virtual
authenticator, in-process and over UDP, and compare them byte by byte with hand-written CBOR.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fido2.ctap import CtapDevice
from fido2.hid import CTAPHID
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
    _as_cbor,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyctl.authenticator import VirtualAuthenticator
from keyctl.errors import ExitCode, ServerUnavailable
from keyctl.hid.udp import UdpServer
from keyctl.webauthn import ceremony, flows, profile
from keyctl.webauthn.session import Session
from tests.webauthn.conftest import Opener, Quiet, authenticator, client
from tests.webauthn.servers import State, serve

ORIGIN = "https://example.com"
PUBLIC_KEY = PublicKeyCredentialType.PUBLIC_KEY
ES256 = [PublicKeyCredentialParameters(type=PUBLIC_KEY, alg=-7)]
DISCOURAGED = UserVerificationRequirement.DISCOURAGED  # no PIN/UV token: the request is deterministic

# Hand-written CBOR (RFC 8949, CTAP2 canonical key order): 0x60 is the empty text string, 0x40 the empty
# byte string; fido2 2.2.1 unpatched sends 0x80 (an empty array) for both.
RP = "a262" + b"id".hex() + "6b" + b"example.com".hex() + "64" + b"name".hex() + "60"
USER = "a362" + b"id".hex() + "42010264" + b"name".hex() + "606b" + b"displayName".hex() + "60"
ES256_PARAMS = "81a263" + b"alg".hex() + "2664" + b"type".hex() + "6a" + b"public-key".hex()
EMPTY_DESCRIPTOR = "a262" + b"id".hex() + "4064" + b"type".hex() + "6a" + b"public-key".hex()


class Recorder(CtapDevice):
    """A CtapDevice in front of another that keeps every CTAP2 (CBOR) message it forwards."""

    def __init__(self, inner: CtapDevice) -> None:
        self.inner = inner
        self.cbor: list[bytes] = []

    @property
    def capabilities(self) -> int:
        return self.inner.capabilities

    def call(self, cmd: int, data: bytes = b"", event: Any = None, on_keepalive: Any = None) -> bytes:
        if cmd == CTAPHID.CBOR:
            self.cbor.append(bytes(data))
        return self.inner.call(cmd, data, event, on_keepalive)

    def close(self) -> None:
        self.inner.close()

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


def _recorded(transport: Opener, key: VirtualAuthenticator) -> Recorder:
    return Recorder(transport(key)())


def _creation(**overrides: Any) -> PublicKeyCredentialCreationOptions:
    fields: dict[str, Any] = {
        "rp": PublicKeyCredentialRpEntity(name="", id="example.com"),
        "user": PublicKeyCredentialUserEntity(name="", id=b"\x01\x02", display_name=""),
        "challenge": b"c" * 16,
        "pub_key_cred_params": ES256,
        "authenticator_selection": AuthenticatorSelectionCriteria(user_verification=DISCOURAGED),
        **overrides,
    }
    return PublicKeyCredentialCreationOptions(**fields)


def test_empty_names_reach_the_authenticator_as_text(transport: Opener) -> None:
    """rp.name, user.name and user.displayName all empty, an empty id in excludeCredentials, credProps
    and prf inputs: the whole authenticatorMakeCredential request, byte by byte."""
    device = _recorded(transport, authenticator())
    options = _creation(
        exclude_credentials=[PublicKeyCredentialDescriptor(type=PUBLIC_KEY, id=b"")],
        extensions={"credProps": True},
    )
    response = ceremony.make_credential(device, ORIGIN, options, Quiet(), 5)

    client_data_hash = hashlib.sha256(response.response.client_data).digest()
    # The exclude list is probed first with a silent getAssertion: the empty id goes as bytes there too.
    probe = (
        "02" "a4" "01" "6b" + b"example.com".hex() + "02" "5820" + "00" * 32
        + "03" "81" + EMPTY_DESCRIPTOR + "05" "a1" "62" + b"up".hex() + "f4"
    )  # fmt: skip
    make_credential = (
        "01" "a4" "01" "5820" + client_data_hash.hex() + "02" + RP + "03" + USER + "04" + ES256_PARAMS
    )  # fmt: skip
    assert [m.hex() for m in device.cbor if m[:1] in (b"\x01", b"\x02")] == [probe, make_credential]
    assert dict(response.client_extension_results) == {"credProps": {"rk": False}}


def test_a_discoverable_credential_keeps_its_empty_names(transport: Opener) -> None:
    """Stored with empty names, the credential comes back in a username-less assertion with text."""
    key = authenticator()
    selection = AuthenticatorSelectionCriteria(
        resident_key=ResidentKeyRequirement.REQUIRED, user_verification=DISCOURAGED
    )
    ceremony.make_credential(
        _recorded(transport, key), ORIGIN, _creation(authenticator_selection=selection), Quiet(), 5
    )
    request = PublicKeyCredentialRequestOptions(challenge=b"r" * 16, rp_id="example.com")
    assertion = ceremony.get_assertion(_recorded(transport, key), ORIGIN, request, Quiet(), 5)
    assert assertion.response.user_handle == b"\x01\x02"


def test_an_empty_id_in_allow_credentials_goes_as_bytes(transport: Opener) -> None:
    key = authenticator()
    registered = ceremony.make_credential(_recorded(transport, key), ORIGIN, _creation(), Quiet(), 5)
    device = _recorded(transport, key)
    request = PublicKeyCredentialRequestOptions(
        challenge=b"r" * 16,
        rp_id="example.com",
        allow_credentials=[
            PublicKeyCredentialDescriptor(type=PUBLIC_KEY, id=b""),
            PublicKeyCredentialDescriptor(type=PUBLIC_KEY, id=registered.raw_id),
        ],
        user_verification=DISCOURAGED,
    )
    assertion = ceremony.get_assertion(device, ORIGIN, request, Quiet(), 5)
    assert assertion.raw_id == registered.raw_id
    first_probe = device.cbor[[m[:1] for m in device.cbor].index(b"\x02")]
    assert EMPTY_DESCRIPTOR in first_probe.hex()


def test_the_platform_route_marshals_text_too() -> None:
    """fido2's WindowsClient hands ``_as_cbor(options.user)`` to webauthn.dll's structures."""
    user = PublicKeyCredentialUserEntity(name="", id=b"\x01", display_name="")
    assert _as_cbor(user) == {"id": b"\x01", "name": "", "displayName": ""}
    assert dict(PublicKeyCredentialRpEntity(name="", id="example.com")) == {"name": "", "id": "example.com"}
    assert dict(PublicKeyCredentialDescriptor(type=PUBLIC_KEY, id=b"")) == {"type": "public-key", "id": ""}


def _bad_handle_app(user_id: str) -> Callable[[State], Starlette]:
    def app(state: State) -> Starlette:
        async def options(request: Request) -> Response:
            return JSONResponse(
                {
                    "rp": {"name": "Example", "id": "localhost"},
                    "user": {"id": user_id, "name": "ana", "displayName": ""},
                    "challenge": "Y2hhbGxlbmdlY2hhbGxlbmdl",
                    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                }
            )

        return Starlette(routes=[Route("/generate-registration-options", options)])

    return app


@pytest.mark.parametrize(("user_id", "length"), [("", 0), ("A" * 87, 65)])
def test_a_user_handle_outside_1_to_64_bytes_is_refused_before_the_authenticator(
    user_id: str, length: int
) -> None:
    opened: list[bool] = []

    def open_device() -> CtapDevice:
        opened.append(True)
        raise AssertionError("the authenticator must not be reached")

    with (
        serve(_bad_handle_app(user_id)) as server,
        Session(server.url, profile.load("simplewebauthn"), server.url) as session,
        pytest.raises(ServerUnavailable) as refused,
    ):
        flows.register(session, client(server.url, open_device), flows.Request(user="ana"))
    assert refused.value.message == (
        "Passkey unavailable (the server's registration options are invalid: user.id is"
        f" {length} bytes long; WebAuthn requires 1 to 64 bytes)"
    )
    assert refused.value.exit_code == ExitCode.SERVER_UNAVAILABLE
    assert opened == []


def test_a_credential_renamed_to_an_empty_display_name(cli: Callable[..., Any], monkeypatch: Any) -> None:
    """`keyctl key creds update-user --display-name ""`: credentialManagement's user entity, as text."""
    pin = "4821-good"
    key = VirtualAuthenticator(pin_code=pin)
    selection = AuthenticatorSelectionCriteria(resident_key=ResidentKeyRequirement.REQUIRED)
    server = UdpServer(key, "127.0.0.1", 0).start()
    try:
        host, port = server.address
        spec = f"udp:{host}:{port}"
        options = _creation(
            user=PublicKeyCredentialUserEntity(name="ana", id=b"\x01", display_name="Ana"),
            authenticator_selection=selection,
        )
        made = ceremony.make_credential(ceremony.open_authenticator(spec), ORIGIN, options, Quiet(pin), 5)
        monkeypatch.setenv("TEST_PIN", pin)
        credential_id = made.id
        renamed = cli("key", "creds", "update-user", credential_id, "--display-name", "",
                      "--device", spec, "--pin-env", "TEST_PIN")  # fmt: skip
        assert renamed.exit_code == 0, renamed.stderr
        listed = cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN", "--json")
        assert [(c["user_name"], c["display_name"]) for c in json.loads(listed.stdout)] == [("ana", "")]
    finally:
        server.stop()


def test_prf_with_one_empty_salt_answers_first_only(transport: Opener) -> None:
    """An empty prf ``first`` input is legal (it is hashed into the salt); one salt gives one output,
    with no empty ``second`` (fido2 2.2.1 unpatched reports ``second: []``)."""
    key = authenticator()
    made = ceremony.make_credential(
        _recorded(transport, key), ORIGIN, _creation(extensions={"prf": {}}), Quiet(), 5
    )
    assert dict(made.client_extension_results) == {"prf": {"enabled": True}}
    request = PublicKeyCredentialRequestOptions(
        challenge=b"r" * 16,
        rp_id="example.com",
        allow_credentials=[PublicKeyCredentialDescriptor(type=PUBLIC_KEY, id=made.raw_id)],
        user_verification=DISCOURAGED,
        extensions={"prf": {"eval": {"first": ""}}},
    )
    assertion = ceremony.get_assertion(_recorded(transport, key), ORIGIN, request, Quiet(), 5)
    results = json.loads(json.dumps(dict(assertion)))["clientExtensionResults"]["prf"]["results"]
    assert list(results) == ["first"]
    assert len(base64.urlsafe_b64decode(results["first"] + "=")) == 32
