"""Everything an authenticator remembers across power cycles, and its CBOR form.

Volatile things (PIN/UV token, key agreement key, pending getNextAssertion) live in ``device.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from keyctl.authenticator import cbor
from keyctl.authenticator.credentials import Alg
from keyctl.authenticator.model import ModelProfile

STATE_VERSION = 1
PIN_RETRIES = 8
UV_RETRIES = 8
DEFAULT_MIN_PIN_LENGTH = 4
MAX_RESIDENT = 100
MAX_TEMPLATES = 5  # enrolled fingerprints
# An empty serialized large-blob array: CBOR [] and the first 16 bytes of its SHA-256 (CTAP 2.1 §6.10.2).
EMPTY_LARGE_BLOB_ARRAY = bytes.fromhex("8076be8b528d0075f7aae98d6fa57a6d3c")


class CounterMode(StrEnum):
    GLOBAL = "global"  # one counter for all credentials
    PER_CREDENTIAL = "per-credential"
    ZERO = "zero"  # always 0: parallel CI jobs sharing one credential don't look like a cloned key


class Protocols(StrEnum):
    """Which protocols the key speaks over CTAPHID: CTAP2 (CBOR), CTAP1/U2F (MSG), or both."""

    BOTH = "both"  # what every FIDO2 USB key does
    CTAP2 = "ctap2"
    U2F = "u2f"  # an old U2F-only key: clients fall back to CTAP1

    @property
    def ctap2(self) -> bool:
        return self is not Protocols.U2F

    @property
    def u2f(self) -> bool:
        return self is not Protocols.CTAP2


class Kind(StrEnum):
    """What the authenticator stands for, as a relying party sees it."""

    SECURITY_KEY = "security-key"  # device-bound, roaming (USB): today's default
    SYNCED = "synced"  # a passkey provider (password manager): backup-eligible and backed up
    PLATFORM = "platform"  # device-bound, built into the computer or phone

    @property
    def provider_aaguid(self) -> str | None:
        """The AAGUID of the real provider the kind stands for (named by keyctl.audit.providers' sources):
        Google Password Manager (synced, in Chrome and Android), Windows Hello's TPM-backed authenticator."""
        return {
            Kind.SYNCED: "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4",
            Kind.PLATFORM: "08987058-cadc-4b81-b6e1-30de50dcbe96",
        }.get(self)

    @property
    def transports(self) -> list[str]:
        return {Kind.SECURITY_KEY: ["usb"], Kind.SYNCED: ["hybrid", "internal"], Kind.PLATFORM: ["internal"]}[
            self
        ]


class AttestationMode(StrEnum):
    NONE = "none"
    SELF = "self"  # packed, signed by the credential key
    X5C = "x5c"  # packed, signed by an attestation key certified by this authenticator's CA


@dataclass
class ResidentCredential:
    credential_id: bytes
    rp_id: str
    rp_name: str | None
    user_id: bytes
    user_name: str | None
    user_display_name: str | None
    alg: Alg
    private: bytes
    cred_protect: int
    hmac_secret: bool
    cred_blob: bytes
    sign_count: int
    serial: int  # creation order: newest first in getAssertion

    def to_cbor(self) -> dict[str, Any]:
        return {
            "id": self.credential_id,
            "rp": self.rp_id,
            "rpName": self.rp_name,
            "user": self.user_id,
            "userName": self.user_name,
            "displayName": self.user_display_name,
            "alg": int(self.alg),
            "key": self.private,
            "credProtect": self.cred_protect,
            "hmacSecret": self.hmac_secret,
            "credBlob": self.cred_blob,
            "count": self.sign_count,
            "serial": self.serial,
        }

    @classmethod
    def from_cbor(cls, data: dict[str, Any]) -> ResidentCredential:
        return cls(
            credential_id=data["id"],
            rp_id=data["rp"],
            rp_name=data["rpName"],
            user_id=data["user"],
            user_name=data["userName"],
            user_display_name=data["displayName"],
            alg=Alg(data["alg"]),
            private=data["key"],
            cred_protect=data["credProtect"],
            hmac_secret=data["hmacSecret"],
            cred_blob=data["credBlob"],
            sign_count=data["count"],
            serial=data["serial"],
        )


@dataclass
class Template:
    """An enrolled fingerprint (the simulated sensor keeps no biometric data, only the record)."""

    template_id: bytes
    name: str | None


@dataclass
class AuthenticatorState:
    aaguid: bytes
    wrap_key: bytes  # AES-256-GCM key wrapping non-discoverable credential IDs; replaced by reset
    attestation: AttestationMode
    counter_mode: CounterMode
    ca_key: bytes  # PKCS#8 DER of the attestation CA key
    ca_cert: bytes  # DER
    attestation_key: bytes  # PKCS#8 DER
    attestation_cert: bytes  # DER, issued by the CA, carries the AAGUID
    presence: str = "auto"
    presence_timeout_s: float = 30.0
    uv: str = "auto"
    global_counter: int = 0
    credential_counters: dict[bytes, int] = field(default_factory=dict)  # non-discoverable, per-credential
    credentials: list[ResidentCredential] = field(default_factory=list)
    next_serial: int = 1
    pin_hash: bytes | None = None  # LEFT(SHA-256(PIN), 16)
    pin_code_points: int = 0
    pin_retries: int = PIN_RETRIES
    uv_retries: int = UV_RETRIES
    force_pin_change: bool = False
    min_pin_length: int = DEFAULT_MIN_PIN_LENGTH
    min_pin_length_rp_ids: list[str] = field(default_factory=list)
    always_uv: bool = False
    enterprise_attestation: bool = False
    templates: list[Template] = field(default_factory=list)
    kind: Kind = Kind.SECURITY_KEY
    # Synced kind: per peer (another device of the same provider account), the IDs of the discoverable
    # credentials both held after their last sync: what tells a deletion on one side from a creation.
    sync_bases: dict[str, list[bytes]] = field(default_factory=dict)
    # Vendor-facilitated enterprise attestation: RP IDs "burned in" at creation, never changed after.
    ep_rp_ids: list[str] = field(default_factory=list)
    # The device-identifying certificate (and its key) enterprise attestation uses, made when first needed.
    enterprise_key: bytes | None = None
    enterprise_cert: bytes | None = None
    protocols: Protocols = Protocols.BOTH
    large_blob_array: bytes = EMPTY_LARGE_BLOB_ARRAY  # authenticatorLargeBlobs' serialized array
    model: ModelProfile | None = None  # a real key's getInfo, from its FIDO metadata statement

    def to_bytes(self) -> bytes:
        return cbor.encode(
            {
                "v": STATE_VERSION,
                "aaguid": self.aaguid,
                "wrapKey": self.wrap_key,
                "attestation": self.attestation.value,
                "counterMode": self.counter_mode.value,
                "caKey": self.ca_key,
                "caCert": self.ca_cert,
                "attKey": self.attestation_key,
                "attCert": self.attestation_cert,
                "presence": self.presence,
                "presenceTimeoutMs": round(self.presence_timeout_s * 1000),
                "uv": self.uv,
                "counter": self.global_counter,
                "counters": [[k, v] for k, v in self.credential_counters.items()],
                "credentials": [c.to_cbor() for c in self.credentials],
                "nextSerial": self.next_serial,
                "pinHash": self.pin_hash,
                "pinLength": self.pin_code_points,
                "pinRetries": self.pin_retries,
                "uvRetries": self.uv_retries,
                "forcePinChange": self.force_pin_change,
                "minPinLength": self.min_pin_length,
                "minPinLengthRpIds": self.min_pin_length_rp_ids,
                "alwaysUv": self.always_uv,
                "ep": self.enterprise_attestation,
                "templates": [[t.template_id, t.name] for t in self.templates],
                "kind": self.kind.value,
                "syncBases": self.sync_bases,
                "epRpIds": self.ep_rp_ids,
                "epKey": self.enterprise_key,
                "epCert": self.enterprise_cert,
                "protocols": self.protocols.value,
                "largeBlobs": self.large_blob_array,
                "model": self.model.to_cbor() if self.model is not None else None,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> AuthenticatorState:
        """Parse a stored state; raise ValueError (or KeyError/TypeError) when it is not one."""
        data = cbor.decode(raw)
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            raise ValueError("not a keyctl virtual authenticator state (or a newer version)")
        return cls(
            aaguid=data["aaguid"],
            wrap_key=data["wrapKey"],
            attestation=AttestationMode(data["attestation"]),
            counter_mode=CounterMode(data["counterMode"]),
            ca_key=data["caKey"],
            ca_cert=data["caCert"],
            attestation_key=data["attKey"],
            attestation_cert=data["attCert"],
            presence=data["presence"],
            presence_timeout_s=data["presenceTimeoutMs"] / 1000,
            uv=data["uv"],
            global_counter=data["counter"],
            credential_counters={bytes(k): int(v) for k, v in data["counters"]},
            credentials=[ResidentCredential.from_cbor(c) for c in data["credentials"]],
            next_serial=data["nextSerial"],
            pin_hash=data["pinHash"],
            pin_code_points=data["pinLength"],
            pin_retries=data["pinRetries"],
            uv_retries=data["uvRetries"],
            force_pin_change=data["forcePinChange"],
            min_pin_length=data["minPinLength"],
            min_pin_length_rp_ids=list(data["minPinLengthRpIds"]),
            always_uv=data["alwaysUv"],
            enterprise_attestation=data["ep"],
            templates=[Template(bytes(i), n) for i, n in data.get("templates", [])],  # absent before bio
            kind=Kind(data.get("kind", Kind.SECURITY_KEY)),  # absent before kinds
            sync_bases={str(k): [bytes(i) for i in v] for k, v in data.get("syncBases", {}).items()},
            ep_rp_ids=list(data.get("epRpIds", [])),  # absent before the enterprise RP ID list
            enterprise_key=data.get("epKey"),
            enterprise_cert=data.get("epCert"),
            protocols=Protocols(data.get("protocols", Protocols.BOTH)),  # absent before U2F
            large_blob_array=data.get("largeBlobs", EMPTY_LARGE_BLOB_ARRAY),
            model=ModelProfile.from_cbor(data["model"]) if data.get("model") else None,
        )
