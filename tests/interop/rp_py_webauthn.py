"""A relying party on py_webauthn (Duo's ``webauthn`` package) with the library's own defaults.
Run as a script: ``python -m tests.interop.rp_py_webauthn`` prints ``listening PORT``."""

from __future__ import annotations

import json
import secrets
from typing import Any

from webauthn.helpers import exceptions
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialHint,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

import webauthn
from tests.interop.rp_harness import Answer, Failure, run

RP_ID = "localhost"
users: dict[str, dict[str, Any]] = {}  # name -> {"id": bytes, "credentials": [{id, public_key, sign_count}]}
variant: dict[str, Any] = {}
origin = ""


def _options(options: Any) -> Any:
    return json.loads(webauthn.options_to_json(options))


def register_options(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    name = body["username"]
    account = users.setdefault(name, {"id": secrets.token_bytes(16), "credentials": []})
    arguments: dict[str, Any] = {
        "rp_id": RP_ID,
        "rp_name": "py_webauthn interop",
        "user_name": name,
        "user_id": account["id"],
        "exclude_credentials": [PublicKeyCredentialDescriptor(id=c["id"]) for c in account["credentials"]],
    }
    if body.get("residentKey") or body.get("userVerification"):
        arguments["authenticator_selection"] = AuthenticatorSelectionCriteria(
            **(
                {"resident_key": ResidentKeyRequirement(body["residentKey"])}
                if body.get("residentKey")
                else {}
            ),
            **(
                {"user_verification": UserVerificationRequirement(body["userVerification"])}
                if body.get("userVerification")
                else {}
            ),
        )
    if "attestation" in variant:
        arguments["attestation"] = AttestationConveyancePreference(variant["attestation"])
    if "algorithms" in variant:
        arguments["supported_pub_key_algs"] = variant["algorithms"]
    if "hint" in variant:
        arguments["hints"] = [PublicKeyCredentialHint(variant["hint"])]
    if variant.get("exclude") is False:
        arguments["exclude_credentials"] = []
    options = webauthn.generate_registration_options(**arguments)
    session.update(
        challenge=options.challenge,
        username=name,
        uv=body.get("userVerification") == "required",
        algorithms=variant.get("algorithms"),
    )
    return 200, _options(options)


def _flags(uv: bool, counter: int, device_type: Any, backed_up: bool) -> dict[str, Any]:
    return {
        "verified": True,
        "counter": counter,
        "userVerified": uv,
        "backupEligible": device_type == "multi_device",
        "backupState": backed_up,
    }


def register_verify(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    extra = {"supported_pub_key_algs": session["algorithms"]} if session.get("algorithms") else {}
    verified = webauthn.verify_registration_response(
        credential=body,
        expected_challenge=session.pop("challenge", b""),
        expected_rp_id=RP_ID,
        expected_origin=origin,
        require_user_verification=session.get("uv", False),
        **extra,
    )
    users[session["username"]]["credentials"].append(
        {
            "id": verified.credential_id,
            "public_key": verified.credential_public_key,
            "sign_count": verified.sign_count,
        }
    )
    flags = _flags(
        verified.user_verified,
        verified.sign_count,
        verified.credential_device_type,
        verified.credential_backed_up,
    )
    return 200, {
        **flags,
        "username": session["username"],
        "fmt": verified.fmt,
        "attestationChecked": True,
        "aaguid": verified.aaguid,
        "credProps": (body.get("clientExtensionResults") or {}).get("credProps"),
    }


def login_options(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    arguments: dict[str, Any] = {"rp_id": RP_ID}
    if "username" in body:
        account = users.get(body["username"])
        if account is None:
            return 404, {"error": f"User {body['username']} is not registered"}
        arguments["allow_credentials"] = [
            PublicKeyCredentialDescriptor(id=c["id"]) for c in account["credentials"]
        ]
    if body.get("userVerification"):
        arguments["user_verification"] = UserVerificationRequirement(body["userVerification"])
    options = webauthn.generate_authentication_options(**arguments)
    session.update(challenge=options.challenge, uv=body.get("userVerification") == "required")
    return 200, _options(options)


def login_verify(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    raw_id = webauthn.base64url_to_bytes(body.get("rawId", ""))
    for name, account in users.items():
        for stored in account["credentials"]:
            if stored["id"] != raw_id:
                continue
            verified = webauthn.verify_authentication_response(
                credential=body,
                expected_challenge=session.pop("challenge", b""),
                expected_rp_id=RP_ID,
                expected_origin=origin,
                credential_public_key=stored["public_key"],
                credential_current_sign_count=stored["sign_count"],
                require_user_verification=session.get("uv", False),
            )
            stored["sign_count"] = verified.new_sign_count
            flags = _flags(
                verified.user_verified,
                verified.new_sign_count,
                verified.credential_device_type,
                verified.credential_backed_up,
            )
            return 200, {**flags, "username": name}
    raise Failure("unknown credential")


def control(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    variant.clear()
    variant.update(body.get("variant") or {})
    # generate_registration_options has no parameter for extensions
    return 200, {"ok": True, "unsupported": [k for k in variant if k == "extensions"]}


def _started(at: str) -> None:
    global origin
    origin = at


if __name__ == "__main__":
    handlers = {
        "/register/options": register_options,
        "/register/verify": register_verify,
        "/login/options": login_options,
        "/login/verify": login_verify,
        "/control": control,
    }
    run(handlers, _started, (exceptions.WebAuthnException, ValueError, KeyError))
