"""authenticatorMakeCredential (0x01)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from keyctl.authenticator import attestation, cbor, credentials, model, params
from keyctl.authenticator.commands.common import (
    auth_data,
    hmac_secret_output,
    hmac_secret_request,
    large_blob_key_requested,
    lookup,
    rp_id_hash,
)
from keyctl.authenticator.commands.user_verification import authorize, collect_presence
from keyctl.authenticator.credentials import MAX_CRED_BLOB, Alg, WrappedKey
from keyctl.authenticator.device import Device
from keyctl.authenticator.pin import Permission
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import MAX_RESIDENT, AuthenticatorState, Kind, ResidentCredential
from keyctl.authenticator.status import CtapFailure, Status


@dataclass(frozen=True)
class MakeCredentialRequest:
    client_data_hash: bytes
    rp_id: str
    rp_name: str | None
    user_id: bytes
    user_name: str | None
    user_display_name: str | None
    algorithms: tuple[int, ...]
    exclude: tuple[bytes, ...]
    extensions: dict[str, Any]
    options: dict[str, bool]
    pin_uv_param: bytes | None
    pin_uv_protocol: int | None
    enterprise_attestation: int | None


def parse(raw: dict[Any, Any]) -> MakeCredentialRequest:
    client_data_hash = params.required(raw, 1, bytes)
    rp = params.required(raw, 2, dict)
    user = params.required(raw, 3, dict)
    algorithms = []
    for item in params.required(raw, 4, list):
        if not isinstance(item, dict):
            raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
        alg = params.required(item, "alg", int)
        if params.required(item, "type", str) == "public-key":
            algorithms.append(alg)
    return MakeCredentialRequest(
        client_data_hash=client_data_hash,
        rp_id=params.required(rp, "id", str),
        rp_name=params.optional(rp, "name", str),
        user_id=params.required(user, "id", bytes),
        user_name=params.optional(user, "name", str),
        user_display_name=params.optional(user, "displayName", str),
        algorithms=tuple(algorithms),
        exclude=tuple(params.descriptors(raw, 5)),
        extensions=params.optional(raw, 6, dict) or {},
        options=params.options(raw, 7),
        pin_uv_param=params.optional(raw, 8, bytes),
        pin_uv_protocol=params.optional(raw, 9, int),
        enterprise_attestation=params.optional(raw, 10, int),
    )


def _enterprise(state: AuthenticatorState, request: MakeCredentialRequest) -> bool:
    """CTAP 2.1 §6.1.2 step 9: may this credential get an enterprise attestation?

    Value 1 (vendor-facilitated) only for an RP ID on the list set at creation; value 2 (platform-managed)
    for any RP ID, the platform having vetted it. Otherwise the request is treated as if it had not asked.
    """
    value = request.enterprise_attestation
    if value is None:
        return False
    if not state.enterprise_attestation:
        raise CtapFailure(Status.INVALID_PARAMETER)
    if value not in (1, 2):
        raise CtapFailure(Status.INVALID_OPTION)
    return value == 2 or request.rp_id in state.ep_rp_ids


def handle(device: Device, state: AuthenticatorState, raw: dict[Any, Any], link: Link) -> dict[int, Any]:
    request = parse(raw)
    if len(request.user_id) > 64:
        raise CtapFailure(Status.INVALID_LENGTH)
    implemented = state.model.algorithms if state.model is not None else (Alg.ES256, Alg.EDDSA)
    supported = [a for a in request.algorithms if a in implemented]
    if not supported:
        raise CtapFailure(Status.UNSUPPORTED_ALGORITHM)
    alg = Alg(supported[0])
    if request.options.get("up") is False:
        raise CtapFailure(Status.INVALID_OPTION)
    rk = request.options.get("rk", False)
    if rk and not model.has(state.model, "rk"):
        raise CtapFailure(Status.UNSUPPORTED_OPTION)  # a model without discoverable credentials
    resident = rk or state.kind is not Kind.SECURITY_KEY  # platforms and providers store every passkey
    enterprise = _enterprise(state, request)
    uv = authorize(
        device,
        state,
        link,
        rp_id=request.rp_id,
        client_data_hash=request.client_data_hash,
        pin_uv_param=request.pin_uv_param,
        pin_uv_protocol=request.pin_uv_protocol,
        uv_option=request.options.get("uv", False),
        permission=Permission.MAKE_CREDENTIAL,
        needs_uv=rk or model.uv_for_every_credential(state.model),
    )
    # extension inputs that can be malformed are checked before any touch
    ext_in = model.extensions(state.model, request.extensions)  # a model ignores what it lacks
    hmac_secret = ext_in.get("hmac-secret") is True
    hmac_mc = (
        hmac_secret_request(device, ext_in["hmac-secret-mc"])
        if hmac_secret and "hmac-secret-mc" in ext_in
        else None
    )
    large_blob_key = large_blob_key_requested(ext_in)
    if large_blob_key and not resident:
        raise CtapFailure(Status.INVALID_OPTION)
    for credential_id in request.exclude:
        found = lookup(device, state, credential_id, request.rp_id)
        if found is not None and (found[0].cred_protect != 3 or uv):
            device.confirm_presence(state, "confirm this key is already registered", request.rp_id, link)
            raise CtapFailure(Status.CREDENTIAL_EXCLUDED)
    collect_presence(
        device, state, "create a passkey", request.rp_id, link, used_token=request.pin_uv_param is not None
    )

    ext_out: dict[str, Any] = {}
    cred_protect = ext_in.get("credProtect")
    if not isinstance(cred_protect, int) or cred_protect not in (1, 2, 3):
        cred_protect = 1
    else:  # the applied policy is reported whenever one was asked for, level 1 included
        ext_out["credProtect"] = cred_protect
    if hmac_secret:
        ext_out["hmac-secret"] = True
    cred_blob = b""
    if isinstance(ext_in.get("credBlob"), bytes):
        fits = len(ext_in["credBlob"]) <= MAX_CRED_BLOB
        cred_blob = ext_in["credBlob"] if fits else b""
        ext_out["credBlob"] = fits
    if ext_in.get("minPinLength") is True and request.rp_id in state.min_pin_length_rp_ids:
        ext_out["minPinLength"] = state.min_pin_length

    rp_hash = rp_id_hash(request.rp_id)
    private = credentials.generate_private(alg, device.rng.random(32))
    third_party_payment = ext_in.get("thirdPartyPayment") is True
    wrapped = WrappedKey(
        alg,
        private,
        rp_hash,
        resident,
        cred_protect,
        hmac_secret,
        cred_blob,
        large_blob_key,
        third_party_payment,
    )
    if hmac_mc is not None:  # hmac-secret-mc: the first PRF output at creation (CTAP 2.2)
        ext_out["hmac-secret-mc"] = hmac_secret_output(device, state, hmac_mc, wrapped, uv)
    credential_id = credentials.wrap(state.wrap_key, device.rng.random(credentials.NONCE_SIZE), wrapped)
    record = None
    if resident:
        state.credentials = [
            c for c in state.credentials if not (c.rp_id == request.rp_id and c.user_id == request.user_id)
        ]
        if len(state.credentials) >= MAX_RESIDENT:
            raise CtapFailure(Status.KEY_STORE_FULL)
        record = ResidentCredential(
            credential_id=credential_id,
            rp_id=request.rp_id,
            rp_name=request.rp_name,
            user_id=request.user_id,
            user_name=request.user_name,
            user_display_name=request.user_display_name,
            alg=alg,
            private=private,
            cred_protect=cred_protect,
            hmac_secret=hmac_secret,
            cred_blob=cred_blob,
            sign_count=0,
            serial=state.next_serial,
        )
        state.next_serial += 1
        state.credentials.append(record)
    key = device.private_key(alg, private)
    cose_key = cbor.encode(credentials.cose_public_key(alg, key))
    attested = state.aaguid + struct.pack(">H", len(credential_id)) + credential_id + cose_key
    data = auth_data(
        rp_hash,
        up=True,
        uv=uv,
        counter=device.next_counter(state, credential_id, record),
        attested=attested,
        extensions=ext_out,
        synced=state.kind is Kind.SYNCED,
    )
    fmt, statement = attestation.statement(state, alg, key, data, request.client_data_hash, enterprise)
    response: dict[int, Any] = {1: fmt, 2: data, 3: statement}
    if enterprise:
        response[4] = True
    if large_blob_key:
        response[5] = credentials.large_blob_key(state.wrap_key, credential_id)
    return response
