"""CTAP1/U2F (FIDO U2F Raw Message Formats) over CTAPHID_MSG: one APDU in, response data + status word out.

Key handles are the same stateless credential IDs CTAP2 uses (AES-GCM under the wrap key, bound to the
application parameter as rpIdHash), so a U2F registration is a non-discoverable ES256 credential that
CTAP2 getAssertion finds under the rpId whose hash is the application parameter, and a CTAP2
non-discoverable ES256 credential answers U2F_AUTHENTICATE; both count on the same signature counter.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyctl.authenticator import attestation, credentials
from keyctl.authenticator.credentials import Alg, WrappedKey
from keyctl.authenticator.device import Device
from keyctl.authenticator.ports import Link, PresenceMode, PresenceRequest
from keyctl.authenticator.state import AttestationMode, AuthenticatorState

log = logging.getLogger(__name__)

REGISTER = 0x01
AUTHENTICATE = 0x02
VERSION = 0x03
VERSION_STRING = b"U2F_V2"
CHECK_ONLY = 0x07
ENFORCE_USER_PRESENCE = 0x03
DONT_ENFORCE_USER_PRESENCE = 0x08
REGISTER_RESERVED = 0x05
FLAG_USER_PRESENT = 0x01


class Sw(IntEnum):
    """ISO 7816-4 status words a U2F key answers with."""

    NO_ERROR = 0x9000
    CONDITIONS_NOT_SATISFIED = 0x6985  # no touch (yet), or check-only found the key handle
    WRONG_DATA = 0x6A80  # not one of our key handles
    WRONG_LENGTH = 0x6700
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN = 0x6F00


class ApduError(Exception):
    def __init__(self, sw: Sw) -> None:
        super().__init__(sw.name)
        self.sw = sw


@dataclass(frozen=True)
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes


def parse(raw: bytes) -> Apdu:
    """A command APDU in short or extended length encoding (ISO 7816-4 cases 1-4)."""
    if len(raw) < 4:
        raise ApduError(Sw.WRONG_LENGTH)
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if len(body) <= 1:  # case 1, or case 2 short (Le only)
        return Apdu(cla, ins, p1, p2, b"")
    if body[0] != 0:  # short Lc
        length, rest = body[0], body[1:]
        if len(rest) not in (length, length + 1):  # data, then an optional one-byte Le
            raise ApduError(Sw.WRONG_LENGTH)
        return Apdu(cla, ins, p1, p2, rest[:length])
    if len(body) == 3:  # case 2 extended: 00 Le1 Le2
        return Apdu(cla, ins, p1, p2, b"")
    if len(body) < 3:
        raise ApduError(Sw.WRONG_LENGTH)
    length = struct.unpack_from(">H", body, 1)[0]
    rest = body[3:]
    # data, then an optional two-byte Le; Lc 0 with Le is how python-fido2 sends an APDU without data
    if len(rest) not in (length, length + 2):
        raise ApduError(Sw.WRONG_LENGTH)
    return Apdu(cla, ins, p1, p2, rest[:length])


def handle(device: Device, raw: bytes, link: Link) -> bytes:
    """One U2F request APDU to its response (data + SW1 SW2); never raises."""
    try:
        apdu = parse(raw)
        if apdu.cla != 0:
            raise ApduError(Sw.CLA_NOT_SUPPORTED)
        if apdu.ins == VERSION:
            if apdu.data:
                raise ApduError(Sw.WRONG_LENGTH)
            return VERSION_STRING + struct.pack(">H", Sw.NO_ERROR)
        if apdu.ins not in (REGISTER, AUTHENTICATE):
            raise ApduError(Sw.INS_NOT_SUPPORTED)
        with device.store.transaction() as state:
            if apdu.ins == REGISTER:
                data = _register(device, state, apdu, link)
            else:
                data = _authenticate(device, state, apdu, link)
        return data + struct.pack(">H", Sw.NO_ERROR)
    except ApduError as error:
        log.debug("U2F request answered %s", error.sw.name)
        return struct.pack(">H", error.sw)
    except Exception:  # a bug or a broken store: answer like a key with an internal error
        log.exception("U2F request failed")
        return struct.pack(">H", Sw.UNKNOWN)


def _touch(device: Device, state: AuthenticatorState, action: str, link: Link) -> None:
    """Test of user presence. A U2F key answers at once: no touch (yet) is CONDITIONS_NOT_SATISFIED and
    the host retries. 'timeout' (nobody touches) and 'deny' always answer that; 'prompt' asks on the
    terminal without waiting and keeps a yes for the retry (ports.LatchedTouch)."""
    policy = device.policy(state)
    if policy.presence is PresenceMode.AUTO:
        return
    prompter = policy.prompter if policy.presence is PresenceMode.PROMPT else None
    if prompter is not None and device.u2f_touch.take(prompter, PresenceRequest(action)):
        return
    raise ApduError(Sw.CONDITIONS_NOT_SATISFIED)


def _register(device: Device, state: AuthenticatorState, apdu: Apdu, link: Link) -> bytes:
    if len(apdu.data) != 64:
        raise ApduError(Sw.WRONG_LENGTH)
    challenge, application = apdu.data[:32], apdu.data[32:]
    _touch(device, state, "register this key (U2F)", link)
    private = credentials.generate_private(Alg.ES256, device.rng.random(32))
    wrapped = WrappedKey(Alg.ES256, private, application, False, 1, False, b"")
    key_handle = credentials.wrap(state.wrap_key, device.rng.random(credentials.NONCE_SIZE), wrapped)
    key = device.private_key(Alg.ES256, private)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    signed = b"\x00" + application + challenge + key_handle + public
    if state.attestation is AttestationMode.SELF:
        certificate, signer = attestation.self_signed_certificate(key), key
    else:  # a U2F registration always carries a certificate: the authenticator's attestation one
        certificate, signer = state.attestation_cert, attestation.attestation_key(state)
    signature = credentials.sign(signer, signed)
    return (
        bytes([REGISTER_RESERVED]) + public + bytes([len(key_handle)]) + key_handle + certificate + signature
    )


def _authenticate(device: Device, state: AuthenticatorState, apdu: Apdu, link: Link) -> bytes:
    data = apdu.data
    if len(data) < 65 or len(data) != 65 + data[64]:
        raise ApduError(Sw.WRONG_LENGTH)
    challenge, application, key_handle = data[:32], data[32:64], data[65:]
    wrapped = device.unwrap(state, key_handle, application)
    # Discoverable credentials, EdDSA keys and credProtect uvRequired ones are CTAP2-only.
    if wrapped is None or wrapped.resident or wrapped.alg is not Alg.ES256 or wrapped.cred_protect == 3:
        raise ApduError(Sw.WRONG_DATA)
    if apdu.p1 == CHECK_ONLY:
        raise ApduError(Sw.CONDITIONS_NOT_SATISFIED)  # "this key handle is mine": as the spec says
    if apdu.p1 == ENFORCE_USER_PRESENCE:
        _touch(device, state, "sign in (U2F)", link)
        flags = FLAG_USER_PRESENT
    elif apdu.p1 == DONT_ENFORCE_USER_PRESENCE:
        flags = 0
    else:
        raise ApduError(Sw.WRONG_DATA)
    counter = device.next_counter(state, key_handle, None) & 0xFFFFFFFF
    signed = application + bytes([flags]) + struct.pack(">I", counter) + challenge
    signature = credentials.sign(device.private_key(Alg.ES256, wrapped.private), signed)
    return bytes([flags]) + struct.pack(">I", counter) + signature
