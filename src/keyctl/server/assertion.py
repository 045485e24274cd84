"""A passkey login's AuthenticationResponseJSON, parsed and verified without python-fido2's dataclasses.

python-fido2's ``AuthenticationResponse.from_dict`` evaluates the type hints of six dataclasses on every
parse, which was most of the server's CPU time per login. This module reads the few fields a login needs
straight from the JSON, uses fido2's own binary parsers (``AuthenticatorData``, ``AttestedCredentialData``
and its ``CoseKey``), and makes the checks of ``Fido2Server.authenticate_complete`` one by one, in its
order and with its messages: clientData type, origin, challenge, rpIdHash, UP flag, UV flag when
required, signature. The parsing is stricter than fido2's (fido2 accepts a number where bytes are
expected, base64 with padding or foreign characters, a missing ``id``); tests/server/test_assertion.py checks
against ``Fido2Server`` that it never accepts what fido2 refuses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from fido2.cose import CoseKey
from fido2.webauthn import AuthenticatorData

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class MalformedResponse(ValueError):
    """The response is not a well-formed AuthenticationResponseJSON (a client bug, not a forgery)."""


class VerificationError(ValueError):
    """The response is well formed but does not verify."""


@dataclass(frozen=True)
class Assertion:
    credential_id: bytes
    client_data: bytes  # the clientDataJSON bytes, as signed
    type: str
    challenge: bytes
    origin: str
    authenticator_data: AuthenticatorData
    signature: bytes
    user_handle: bytes | None


def _bytes(mapping: Mapping[str, Any], key: str, where: str = "") -> bytes:
    value = mapping.get(key)
    if not isinstance(value, str) or not _BASE64URL.fullmatch(value) or len(value) % 4 == 1:
        raise MalformedResponse(f"{where}{key} must be a base64url string without padding")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def parse(body: Mapping[str, Any]) -> Assertion:
    """The fields of an AuthenticationResponseJSON that a login uses, or MalformedResponse."""
    if body.get("type") != "public-key":
        raise MalformedResponse("type must be 'public-key'")
    credential_id = _bytes(body, "rawId")
    if body.get("id") != body["rawId"]:
        raise MalformedResponse("id must be present and equal to rawId")
    extensions = body.get("clientExtensionResults")
    if extensions is not None and not isinstance(extensions, dict):
        raise MalformedResponse("clientExtensionResults must be an object")
    response = body.get("response")
    if not isinstance(response, dict):
        raise MalformedResponse("response must be an object")
    client_data = _bytes(response, "clientDataJSON", "response.")
    try:
        collected = json.loads(client_data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise MalformedResponse("response.clientDataJSON is not UTF-8 JSON") from None
    if not isinstance(collected, dict):
        raise MalformedResponse("response.clientDataJSON must be a JSON object")
    for key in ("type", "challenge", "origin"):
        if not isinstance(collected.get(key), str):
            raise MalformedResponse(f"clientDataJSON.{key} must be a string")
    challenge = _bytes(collected, "challenge", "clientDataJSON.")
    try:
        authenticator_data = AuthenticatorData(_bytes(response, "authenticatorData", "response."))
    except MalformedResponse:
        raise
    except Exception as error:  # struct, CBOR and length errors from fido2's parser
        raise MalformedResponse(f"response.authenticatorData is malformed ({error})"[:200]) from None
    signature = _bytes(response, "signature", "response.")
    user_handle = None if response.get("userHandle") is None else _bytes(response, "userHandle", "response.")
    return Assertion(
        credential_id=credential_id,
        client_data=client_data,
        type=collected["type"],
        challenge=challenge,
        origin=collected["origin"],
        authenticator_data=authenticator_data,
        signature=signature,
        user_handle=user_handle,
    )


def verify(
    assertion: Assertion,
    *,
    public_key: CoseKey,
    challenge: bytes,
    origin: str,
    rp_id_hash: bytes,
    user_verification_required: bool,
) -> None:
    """The checks of fido2's ``Fido2Server.authenticate_complete``, in its order; VerificationError."""
    auth_data = assertion.authenticator_data
    if assertion.type != "webauthn.get":
        raise VerificationError("Incorrect type in CollectedClientData.")
    if assertion.origin != origin:
        raise VerificationError("Invalid origin in CollectedClientData.")
    if not hmac.compare_digest(challenge, assertion.challenge):
        raise VerificationError("Wrong challenge in response.")
    if not hmac.compare_digest(rp_id_hash, auth_data.rp_id_hash):
        raise VerificationError("Wrong RP ID hash in response.")
    if not auth_data.is_user_present():
        raise VerificationError("User Present flag not set.")
    if user_verification_required and not auth_data.is_user_verified():
        raise VerificationError("User verification required, but user verified flag not set.")
    try:
        signed = bytes(auth_data) + hashlib.sha256(assertion.client_data).digest()
        public_key.verify(signed, assertion.signature)
    except InvalidSignature:
        raise VerificationError("Invalid signature.") from None
