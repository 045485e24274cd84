"""HOTP (RFC 4226) and TOTP (RFC 6238) with hmac, for secrets of any length.

pyotp 2.12 refuses secrets shorter than 112 bits, which real services still issue (16 base32 characters
are 80 bits), so keyctl computes codes itself; tests check them against RFC 6238 and oathtool.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
STEAM_ALPHABET = "23456789BCDFGHJKMNPQRTVWXY"
STEAM_DIGITS = 5


@dataclass(frozen=True)
class Code:
    code: str
    remaining: int | None  # seconds until the next TOTP code; None for HOTP
    period: int | None
    counter: int | None  # the HOTP counter this code was made with; None for TOTP


def hotp(secret: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1", encoder: str = "") -> str:
    mac = hmac.new(secret, counter.to_bytes(8, "big"), getattr(hashlib, algorithm.lower())).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    if encoder == "steam":
        chars = []
        for _ in range(STEAM_DIGITS):
            value, index = divmod(value, len(STEAM_ALPHABET))
            chars.append(STEAM_ALPHABET[index])
        return "".join(chars)
    return str(value % 10**digits).zfill(digits)


def totp(
    secret: bytes, now: float, period: int = 30, digits: int = 6, algorithm: str = "SHA1", encoder: str = ""
) -> Code:
    step = int(now) // period
    code = hotp(secret, step, digits, algorithm, encoder)
    return Code(code=code, remaining=period - int(now) % period, period=period, counter=None)
