"""Models of real keys: a FIDO metadata statement's authenticatorGetInfo, cut down to what keyctl
implements, so an authenticator reports (and behaves within) a real model's versions, extensions,
options, algorithms and limits, and never advertises anything it does not do.

``profile(get_info)`` is computed once at creation; the commands consult the stored profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keyctl.authenticator.credentials import MAX_CRED_BLOB, Alg

VERSIONS = ("U2F_V2", "FIDO_2_0", "FIDO_2_1")
EXTENSIONS = (
    "credProtect",
    "hmac-secret",
    "minPinLength",
    "credBlob",
    "hmac-secret-mc",
    "largeBlobKey",
    "thirdPartyPayment",
)
# Options keyctl implements; their values come from the authenticator's state, the model says which exist.
OPTIONS = (
    "rk",
    "up",
    "plat",
    "clientPin",
    "pinUvAuthToken",
    "credMgmt",
    "makeCredUvNotRqd",
    "authnrCfg",
    "alwaysUv",
    "setMinPINLength",
    "ep",
    "largeBlobs",
    "uv",
    "bioEnroll",
    "uvBioEnroll",
)
# Options whose false says the model lacks the feature (CTAP 2.1 §6.4: "false, or absent: not supported"),
# unlike clientPin, uv, alwaysUv, ep and bioEnroll, whose value is a state of a feature that is there.
CAPABILITIES = (
    "rk",
    "pinUvAuthToken",
    "credMgmt",
    "makeCredUvNotRqd",
    "authnrCfg",
    "setMinPINLength",
    "largeBlobs",
)
ALGORITHMS = (int(Alg.ES256), int(Alg.EDDSA))
PIN_UV_PROTOCOLS = (2, 1)
# getInfo limits keyctl can honour at the model's value when it is at most keyctl's own.
LIMITS = {
    "maxMsgSize": (5, 7609),
    "maxCredentialCountInList": (7, 8),
    "maxSerializedLargeBlobArray": (11, 4096),
    "maxCredBlobLength": (15, MAX_CRED_BLOB),
    "maxRPIDsForSetMinPINLength": (16, 8),
}
# Credential IDs are as long as they are (up to 128 bytes): a smaller advertised maximum would be a lie.
MIN_CREDENTIAL_ID_LIMIT = 128
COPIED = {"transports": 9, "firmwareVersion": 14}  # descriptive members taken as they are
HANDLED = {"versions", "extensions", "aaguid", "options", "algorithms", "pinUvAuthProtocols", "minPINLength"}


@dataclass
class ModelProfile:
    name: str
    versions: list[str]
    extensions: list[str]
    options: list[str]
    algorithms: list[int]
    pin_uv_protocols: list[int]
    info: dict[int, Any]  # getInfo members replaced as they are (limits, transports, firmware)
    min_pin_length: int | None
    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    off: list[str] = field(default_factory=list)  # CAPABILITIES the model reports false: it lacks them

    def to_cbor(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "extensions": self.extensions,
            "options": self.options,
            "algorithms": self.algorithms,
            "pinUvAuthProtocols": self.pin_uv_protocols,
            "info": self.info,
            "minPinLength": self.min_pin_length,
            "kept": self.kept,
            "dropped": self.dropped,
            "off": self.off,
        }

    @classmethod
    def from_cbor(cls, data: dict[str, Any]) -> ModelProfile:
        return cls(
            name=data["name"],
            versions=list(data["versions"]),
            extensions=list(data["extensions"]),
            options=list(data["options"]),
            algorithms=list(data["algorithms"]),
            pin_uv_protocols=list(data["pinUvAuthProtocols"]),
            info=dict(data["info"]),
            min_pin_length=data["minPinLength"],
            kept=list(data["kept"]),
            dropped=list(data["dropped"]),
            off=list(data.get("off", [])),
        )


def _split(name: str, values: list[Any], implemented: tuple[Any, ...], profile: ModelProfile) -> list[Any]:
    kept = [v for v in values if v in implemented]
    profile.kept += [f"{name} {v}" for v in kept]
    profile.dropped += [f"{name} {v}: not implemented by keyctl" for v in values if v not in implemented]
    return kept


def profile(name: str, get_info: dict[str, Any]) -> ModelProfile:
    """The model's getInfo (metadata statement JSON form) cut down to what keyctl implements.

    ValueError when the statement has nothing keyctl can be (no FIDO2 version it implements)."""
    result = ModelProfile(name, [], [], [], [], [], {}, None)
    versions = get_info.get("versions")
    result.versions = _split("version", versions if isinstance(versions, list) else [], VERSIONS, result)
    if not any(v.startswith("FIDO_2") for v in result.versions):
        raise ValueError(f"{name} reports no FIDO2 version keyctl implements ({versions})")
    result.extensions = _split("extension", list(get_info.get("extensions") or []), EXTENSIONS, result)
    options = get_info.get("options") or {}
    result.options = _split("option", list(options), OPTIONS, result)
    result.off = [o for o in result.options if o in CAPABILITIES and options[o] is False]
    result.options = [o for o in result.options if o not in result.off]
    off = {f"option {o}" for o in result.off}
    result.kept = [f"{k}: false (the model lacks it)" if k in off else k for k in result.kept]
    if options.get("plat") is True:
        result.options.remove("plat")
        result.dropped.append("option plat: true: keyctl's security key is a roaming authenticator")
    algorithms = [a.get("alg") for a in get_info.get("algorithms") or [] if isinstance(a, dict)]
    result.algorithms = _split("algorithm", algorithms or [int(Alg.ES256)], ALGORITHMS, result)
    if not result.algorithms:
        raise ValueError(f"{name} uses no signature algorithm keyctl implements ({algorithms})")
    protocols = list(get_info.get("pinUvAuthProtocols") or [])
    result.pin_uv_protocols = _split("pinUvAuthProtocol", protocols, PIN_UV_PROTOCOLS, result)
    for member, (key, ours) in LIMITS.items():
        value = get_info.get(member)
        if isinstance(value, int) and value <= ours:
            result.info[key] = value
            result.kept.append(f"{member} {value}")
        elif value is not None:
            result.dropped.append(f"{member} {value}: keyctl reports its own {ours}")
    id_limit = get_info.get("maxCredentialIdLength")
    if isinstance(id_limit, int) and id_limit >= MIN_CREDENTIAL_ID_LIMIT:
        result.info[8] = id_limit
        result.kept.append(f"maxCredentialIdLength {id_limit}")
    elif id_limit is not None:
        result.dropped.append(f"maxCredentialIdLength {id_limit}: keyctl's IDs take up to 128 bytes")
    for member, key in COPIED.items():
        if member in get_info:
            result.info[key] = get_info[member]
            result.kept.append(f"{member} {get_info[member]}")
    min_pin = get_info.get("minPINLength")
    if isinstance(min_pin, int) and 4 <= min_pin <= 63:
        result.min_pin_length = min_pin
        result.kept.append(f"minPINLength {min_pin}")
    for member in sorted(set(get_info) - HANDLED - set(LIMITS) - set(COPIED) - {"maxCredentialIdLength"}):
        if member != "remainingDiscoverableCredentials":  # keyctl counts its own
            result.dropped.append(f"{member}: not implemented by keyctl")
    return result


def apply(info: dict[int, Any], model: ModelProfile) -> dict[int, Any]:
    """getInfo as the model reports it: only what it has and keyctl implements."""
    info[1] = [v for v in info[1] if v in model.versions]
    info[2] = [e for e in info[2] if e in model.extensions]
    info[4] = {k: v for k, v in info[4].items() if k in model.options} | dict.fromkeys(model.off, False)
    info[6] = [p for p in info[6] if p in model.pin_uv_protocols] or info[6]
    info[10] = [a for a in info[10] if a["alg"] in model.algorithms]
    info.update(model.info)
    if 11 in info and "largeBlobs" not in model.options:
        del info[11]
    return info


def has(model: ModelProfile | None, option: str) -> bool:
    """Has the authenticator the feature behind this getInfo option? Without a model, all of keyctl's."""
    return model is None or option in model.options


def uv_for_every_credential(model: ModelProfile | None) -> bool:
    """A protected CTAP 2.1 key without makeCredUvNotRqd verifies the user for non-discoverable credentials
    too (§6.1.2 step 6); CTAP 2.0 had no such rule."""
    return model is not None and "FIDO_2_1" in model.versions and "makeCredUvNotRqd" not in model.options


def extensions(model: ModelProfile | None, requested: dict[str, Any]) -> dict[str, Any]:
    """The extension inputs the authenticator processes: a model ignores those it does not have."""
    if model is None:
        return requested
    return {k: v for k, v in requested.items() if k in model.extensions}
