"""The FIDO AppID extensions (WebAuthn §10.1.1 ``appid``, §10.1.2 ``appidExclude``): credentials registered
with U2F, at relying parties that moved to WebAuthn, are scoped to an AppID URL instead of an rpId.

``appid``: when no credential answers for the rpId, the assertion is asked for again with the AppID as
the rpId (the authenticator hashes it into the application parameter / rpIdHash); the output says which.
``appidExclude``: an excluded credential registered under the AppID also makes registration fail.
python-fido2's ``Fido2Client`` implements neither, so keyctl does it around it, as browsers do.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fido2.ctap import CtapDevice, CtapError
from fido2.ctap1 import APDU, ApduError, Ctap1
from fido2.ctap2.base import Ctap2
from fido2.hid import CAPABILITY
from fido2.rpid import verify_rp_id
from fido2.webauthn import AuthenticationExtensionsClientOutputs, AuthenticationResponse, RegistrationResponse

from keyctl.errors import PhishingRefused

R = TypeVar("R", AuthenticationResponse, RegistrationResponse)


def requested(extensions: Mapping[str, Any] | None, name: str, origin: str) -> str | None:
    """The AppID the server asks for under extension ``name``, checked against ``origin``; or None.

    The FIDO rule (AppID and Facet spec §3.1.2) is that the AppID's host and the caller's origin are the
    same site; keyctl applies the rpId rule to the AppID's host: equal to the origin's host or a
    registrable suffix of it, https only.
    """
    app_id = (extensions or {}).get(name)
    if app_id is None:
        return None
    parts = urlsplit(str(app_id)) if isinstance(app_id, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or not verify_rp_id(parts.hostname, origin)
    ):
        raise PhishingRefused(
            f"the server at {origin} asked for the {name} extension with AppID {app_id!r}, which that "
            "origin may not use",
            "this looks like phishing: check the server URL (nothing was sent to the authenticator)",
        )
    return str(app_id)


def accepting(verify: Callable[[str, str], bool], app_id: str) -> Callable[[str, str], bool]:
    """The client's rpId check, also letting the (already checked) AppID through as an rpId."""
    return lambda rp_id, origin: rp_id == app_id or verify(rp_id, origin)


def report(response: R, name: str, value: bool) -> R:
    """The response with the extension's client output added."""
    outputs = {**dict(response.client_extension_results), name: value}
    return dataclasses.replace(
        response, client_extension_results=AuthenticationExtensionsClientOutputs(outputs)
    )


def registered_under(device: CtapDevice, app_id: str, credential_ids: Sequence[bytes]) -> bool:
    """Is one of ``credential_ids`` a credential of this authenticator for ``app_id``? Asked without a
    touch: CTAP2 getAssertion with up=false, or U2F check-only on a key without CTAP2."""
    capabilities = getattr(device, "capabilities", CAPABILITY.CBOR)
    if capabilities & CAPABILITY.CBOR:
        allow: list[Mapping[str, Any]] = [{"type": "public-key", "id": c} for c in credential_ids]
        client_data_hash = hashlib.sha256(b"keyctl appidExclude probe").digest()
        try:
            Ctap2(device).get_assertion(app_id, client_data_hash, allow, options={"up": False})
        except CtapError as error:
            if error.code == CtapError.ERR.NO_CREDENTIALS or capabilities & CAPABILITY.NMSG:
                return False
        else:
            return True
    ctap1 = Ctap1(device)
    application = hashlib.sha256(app_id.encode()).digest()
    for credential_id in credential_ids:
        if len(credential_id) > 255:  # longer than a U2F key handle can be
            continue
        try:
            ctap1.authenticate(b"\0" * 32, application, credential_id, check_only=True)
        except ApduError as error:
            if error.code == APDU.USE_NOT_SATISFIED:  # "the key handle is mine"
                return True
    return False
