"""A relying party on python-fido2's ``Fido2Server`` with the library's own defaults.
Run as a script: ``python -m tests.interop.rp_fido2`` prints ``listening PORT``.

Fido2Server keeps no signature counters: like any application on it, this one compares them itself."""

from __future__ import annotations

import secrets
from typing import Any

from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestedCredentialData,
    AuthenticationResponse,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from tests.interop.rp_harness import Answer, Failure, run

RP = PublicKeyCredentialRpEntity(name="python-fido2 interop", id="localhost")
users: dict[
    str, dict[str, Any]
] = {}  # name -> {"id": bytes, "credentials": [AttestedCredentialData], "counters"}
variant: dict[str, Any] = {}


def _server() -> Fido2Server:
    server = Fido2Server(RP, attestation=variant.get("attestation"))
    if "algorithms" in variant:
        server.allowed_algorithms = [
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
            for alg in variant["algorithms"]
        ]
    return server


def _json(options: Any) -> Any:
    return {k: _json(v) if hasattr(v, "items") else v for k, v in dict(options).items()}


def register_options(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    name = body["username"]
    account = users.setdefault(name, {"id": secrets.token_bytes(16), "credentials": [], "counters": {}})
    server = _server()
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name=name, id=account["id"]),
        [] if variant.get("exclude") is False else account["credentials"],
        resident_key_requirement=ResidentKeyRequirement(body["residentKey"])
        if body.get("residentKey")
        else None,
        user_verification=(
            UserVerificationRequirement(body["userVerification"]) if body.get("userVerification") else None
        ),
        extensions=variant.get("extensions"),
    )
    session.update(state=state, username=name, variant=dict(variant))
    return 200, _json(options.public_key)


def _flags(auth_data: Any) -> dict[str, Any]:
    return {
        "verified": True,
        "counter": auth_data.counter,
        "userVerified": auth_data.is_user_verified(),
        "backupEligible": auth_data.is_backup_eligible(),
        "backupState": auth_data.is_backed_up(),
    }


def register_verify(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    variant_then = session.get("variant", {})
    server = Fido2Server(RP, attestation=variant_then.get("attestation"))
    response = RegistrationResponse.from_dict(body)
    auth_data = server.register_complete(session.pop("state", None), response)
    credential = auth_data.credential_data
    assert credential is not None
    account = users[session["username"]]
    account["credentials"].append(credential)
    account["counters"][credential.credential_id] = auth_data.counter
    return 200, {
        **_flags(auth_data),
        "username": session["username"],
        "fmt": response.response.attestation_object.fmt,
        "attestationChecked": False,  # Fido2Server ignores attestation unless given verify_attestation
        "aaguid": str(credential.aaguid),
        "credProps": (body.get("clientExtensionResults") or {}).get("credProps"),
    }


def login_options(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    credentials: list[AttestedCredentialData] | None = None
    if "username" in body:
        account = users.get(body["username"])
        if account is None:
            return 404, {"error": f"User {body['username']} is not registered"}
        credentials = account["credentials"]
    uv = body.get("userVerification")
    options, state = _server().authenticate_begin(
        credentials, user_verification=UserVerificationRequirement(uv) if uv else None
    )
    session["state"] = state
    return 200, _json(options.public_key)


def login_verify(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    response = AuthenticationResponse.from_dict(body)
    for name, account in users.items():
        if any(c.credential_id == response.raw_id for c in account["credentials"]):
            _server().authenticate_complete(session.pop("state", None), account["credentials"], response)
            auth_data = response.response.authenticator_data
            known = account["counters"][response.raw_id]
            if (auth_data.counter or known) and auth_data.counter <= known:
                raise Failure(f"signature counter {auth_data.counter} is not above {known}: a cloned key?")
            account["counters"][response.raw_id] = auth_data.counter
            return 200, {**_flags(auth_data), "username": name}
    raise Failure("unknown credential")


def control(body: dict[str, Any], session: dict[str, Any]) -> Answer:
    variant.clear()
    variant.update(body.get("variant") or {})
    if "attestation" in variant:
        AttestationConveyancePreference(variant["attestation"])
    # Fido2Server.register_begin takes no hints
    return 200, {"ok": True, "unsupported": [k for k in variant if k == "hint"]}


if __name__ == "__main__":
    handlers = {
        "/register/options": register_options,
        "/register/verify": register_verify,
        "/login/options": login_options,
        "/login/verify": login_verify,
        "/control": control,
    }
    run(handlers, lambda origin: None, (ValueError, KeyError, TypeError))
