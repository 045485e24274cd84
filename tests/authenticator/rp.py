"""A relying party made of py_webauthn, driving fido2's Fido2Client: nothing of keyctl's client side."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.hid import CtapHidDevice
from fido2.webauthn import PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)

ORIGIN = "https://example.com"
RP_ID = "example.com"


@dataclass(frozen=True)
class Registered:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    fmt: str
    verified: Any


def client(device: CtapHidDevice, origin: str = ORIGIN) -> Fido2Client:
    return Fido2Client(device, DefaultClientDataCollector(origin))


def register(
    device: CtapHidDevice,
    *,
    algs: list[int] | None = None,
    attestation: str = "direct",
    resident: bool = False,
    user_name: str = "alice",
    user_verification: str = "discouraged",
    roots: list[bytes] | None = None,
    extensions: dict[str, Any] | None = None,
    tamper: Callable[[dict[str, Any]], None] | None = None,
    origin: str = ORIGIN,
    rp_id: str = RP_ID,
    request_rp_id: str = RP_ID,
) -> Registered:
    """Create a credential for ``request_rp_id`` through Fido2Client (at ``origin``) and verify it with
    py_webauthn (expecting ``origin``, ``rp_id``), after ``tamper`` had its way with the response."""
    from webauthn.helpers.cose import COSEAlgorithmIdentifier

    options = generate_registration_options(
        rp_id=request_rp_id,
        rp_name="Example",
        user_name=user_name,
        user_id=user_name.encode(),
        attestation=AttestationConveyancePreference(attestation),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED if resident else ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement(user_verification),
        ),
        supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in (algs or [-7])],
    )
    public_key = json.loads(options_to_json(options))
    if extensions:
        public_key["extensions"] = extensions
    response = client(device, origin).make_credential(
        PublicKeyCredentialCreationOptions.from_dict(public_key)
    )
    credential = dict(response)
    if tamper is not None:
        tamper(credential)
    verified = verify_registration_response(
        credential=credential,
        expected_challenge=options.challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in (algs or [-7])],
        pem_root_certs_bytes_by_fmt={"packed": roots} if roots else None,  # type: ignore[dict-item]
    )
    return Registered(
        verified.credential_id,
        verified.credential_public_key,
        verified.sign_count,
        str(verified.fmt),
        verified,
    )


def request_options(
    credential_ids: list[bytes] | None, user_verification: str = "discouraged"
) -> tuple[bytes, dict[str, Any]]:
    options = generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in credential_ids or []],
        user_verification=UserVerificationRequirement(user_verification),
    )
    return options.challenge, json.loads(options_to_json(options))


def authenticate_response(
    device: CtapHidDevice, public_key: dict[str, Any], origin: str = ORIGIN
) -> dict[str, Any]:
    result = client(device, origin).get_assertion(PublicKeyCredentialRequestOptions.from_dict(public_key))
    return dict(result.get_response(0))


def verify_assertion(
    response: dict[str, Any],
    challenge: bytes,
    registered: Registered,
    sign_count: int,
    *,
    origin: str = ORIGIN,
    rp_id: str = RP_ID,
) -> int:
    verified = verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        credential_public_key=registered.public_key,
        credential_current_sign_count=sign_count,
    )
    return verified.new_sign_count
