"""Google Authenticator exports: ``otpauth-migration://offline?data=BASE64`` (a protobuf, parsed by hand).

The payload (from Google Authenticator's export format)::

    MigrationPayload { repeated OtpParameters otp_parameters = 1; int32 version = 2; ... }
    OtpParameters { bytes secret = 1; string name = 2; string issuer = 3; Algorithm algorithm = 4;
                    DigitCount digits = 5; OtpType type = 6; int64 counter = 7; }

with Algorithm 0/1 = SHA1, 2 = SHA256, 3 = SHA512, 4 = MD5; DigitCount 0/1 = 6, 2 = 8; OtpType 1 = HOTP,
0/2 = TOTP. The period is always 30 s.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from keyctl.errors import InvalidInput
from keyctl.totp.model import Credential, Entry, Rejected, check_name, check_parameters

_ALGORITHMS = {0: "SHA1", 1: "SHA1", 2: "SHA256", 3: "SHA512", 4: "MD5"}
_DIGITS = {0: 6, 1: 6, 2: 8}
_FIX = "export again from Google Authenticator (Transfer accounts > Export accounts)"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire_type in (1, 5):  # fixed 64 / 32 bits: not used by this format, skipped
            pos += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def _account(message: bytes) -> Credential | Rejected:
    values: dict[int, int | bytes] = dict(_fields(message))

    def text(number: int) -> str:
        raw = values.get(number, b"")
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""

    def number(field_number: int) -> int:
        raw = values.get(field_number, 0)
        return raw if isinstance(raw, int) else -1

    label, issuer = text(2).strip(), text(3).strip()
    account = label.split(":", 1)[1].strip() if issuer and label.startswith(f"{issuer}:") else label
    name = f"{issuer}:{account}" if issuer and account else issuer or account
    secret = values.get(1, b"")
    algorithm = _ALGORITHMS.get(number(4), f"#{number(4)}")
    digits = _DIGITS.get(number(5), -1)
    try:
        if not isinstance(secret, bytes) or not secret:
            raise InvalidInput("the account has no secret")
        if number(6) not in (0, 1, 2):
            raise InvalidInput(f"unknown OTP type #{number(6)}")
        entry = Entry(
            name=check_name(name),
            issuer=issuer,
            account=account,
            kind="hotp" if number(6) == 1 else "totp",
            algorithm=algorithm,
            digits=digits,
            counter=number(7) if number(6) == 1 else 0,
        )
        return Credential(check_parameters(entry), secret)
    except InvalidInput as error:
        return Rejected(name or "(no name)", error.message)


def payload_from_uri(uri: str) -> bytes:
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() != "otpauth-migration" or parts.netloc.lower() != "offline":
        raise InvalidInput("not a Google Authenticator export URI (otpauth-migration://offline)", _FIX)
    # Split the query by hand: as a form query, the '+' of base64 would become a space.
    data = next((unquote(p[5:]) for p in parts.query.split("&") if p.startswith("data=")), "")
    data = data.replace(" ", "+")  # undo a form-decoding done before keyctl saw the URI
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the export URI's data= is not valid base64", _FIX) from None


def parse_migration(uri: str) -> list[Credential | Rejected]:
    """Every account of an export URI, or the reason it cannot be imported."""
    payload = payload_from_uri(uri)
    try:
        accounts = [value for number, value in _fields(payload) if number == 1 and isinstance(value, bytes)]
        return [_account(message) for message in accounts]
    except ValueError:
        raise InvalidInput("the Google Authenticator export is damaged (bad protobuf)", _FIX) from None
