"""authenticatorGetInfo (0x04)."""

from __future__ import annotations

from typing import Any

from keyctl.authenticator import model, pin
from keyctl.authenticator.commands.large_blobs import MAX_SERIALIZED_ARRAY
from keyctl.authenticator.credentials import MAX_CRED_BLOB, Alg
from keyctl.authenticator.device import Device
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import MAX_RESIDENT, AuthenticatorState, Kind

FIRMWARE_VERSION = 0x00010000
MAX_MSG_SIZE = 7609  # the most a 64-byte-report CTAPHID message can carry
MAX_CREDS_IN_LIST = 8
MAX_CRED_ID_LENGTH = 128
MAX_RP_IDS_FOR_MIN_PIN = 8
# CTAP 2.1's, and the CTAP 2.2 ones browsers use (hmac-secret-mc, largeBlobKey, thirdPartyPayment)
EXTENSIONS = [
    "credProtect",
    "hmac-secret",
    "minPinLength",
    "credBlob",
    "hmac-secret-mc",
    "largeBlobKey",
    "thirdPartyPayment",
]
# FIDO Registry of Predefined Values: USER_VERIFY_FINGERPRINT_INTERNAL, USER_VERIFY_PASSCODE_INTERNAL
UV_MODALITY_FINGERPRINT = 0x02
UV_MODALITY_PASSCODE = 0x04


def handle(device: Device, state: AuthenticatorState, params: dict[Any, Any], link: Link) -> dict[int, Any]:
    options: dict[str, bool] = {
        "rk": True,
        "up": True,
        "plat": state.kind is not Kind.SECURITY_KEY,  # built into the computer (or its browser)
        "clientPin": state.pin_hash is not None,
        "pinUvAuthToken": True,
        "credMgmt": True,
        "makeCredUvNotRqd": not state.always_uv,
        "authnrCfg": True,
        "alwaysUv": state.always_uv,
        "setMinPINLength": True,
        "ep": state.enterprise_attestation,
        "largeBlobs": True,
    }
    info: dict[int, Any] = {
        1: (["U2F_V2"] if state.protocols.u2f else []) + ["FIDO_2_0", "FIDO_2_1"],
        2: EXTENSIONS,
        3: state.aaguid,
        4: options,
        5: MAX_MSG_SIZE,
        6: list(pin.PROTOCOLS),
        7: MAX_CREDS_IN_LIST,
        8: MAX_CRED_ID_LENGTH,
        9: state.kind.transports,
        10: [{"alg": int(alg), "type": "public-key"} for alg in (Alg.ES256, Alg.EDDSA)],
        12: state.force_pin_change,
        13: state.min_pin_length,
        14: FIRMWARE_VERSION,
        11: MAX_SERIALIZED_ARRAY,
        15: MAX_CRED_BLOB,
        16: MAX_RP_IDS_FOR_MIN_PIN,
        20: MAX_RESIDENT - len(state.credentials),
    }
    if device.has_builtin_uv(state):
        # §6.4: uv is false while the method is not configured (a sensor without a finger)
        options["uv"] = device.uv_configured(state)
        # a platform's UV is its OS's (Touch ID, Windows Hello); a key's is on-device passcode entry
        info[18] = UV_MODALITY_PASSCODE if state.kind is Kind.SECURITY_KEY else UV_MODALITY_FINGERPRINT
    if device.has_sensor(state):  # only security keys: a platform enrolls fingers in the OS, not over CTAP
        options["bioEnroll"] = bool(state.templates)  # present: a sensor; true: a finger is enrolled
        options["uvBioEnroll"] = True
        info[18] = UV_MODALITY_FINGERPRINT
    return info if state.model is None else model.apply(info, state.model)
