"""TOTP (RFC 6238 through pyotp: SHA-1, 6 digits, 30 s) and recovery codes, on the server side.

keyctl's own TOTP code (``keyctl.totp``) is the client side; the server uses pyotp so that the two cannot
agree by sharing a bug.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from urllib.parse import quote

import pyotp
import qrcode
import qrcode.image.svg

PERIOD = 30
ISSUER = "keyctl"


def new_secret() -> str:
    """160 random bits in base32, as RFC 4226 recommends."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def otpauth_uri(secret: str, email: str) -> str:
    return (
        f"otpauth://totp/{quote(ISSUER)}:{quote(email)}?secret={secret}&issuer={quote(ISSUER)}"
        f"&algorithm=SHA1&digits=6&period={PERIOD}"
    )


def qr_svg(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue().decode()


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step (previous, current or next) whose code is ``code``, or None."""
    totp = pyotp.TOTP(secret, interval=PERIOD)
    current = int(now // PERIOD)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_code() -> str:
    """80 random bits as four groups of four base32 characters: XXXX-XXXX-XXXX-XXXX."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def recovery_hash(code: str) -> str:
    """The stored form of a recovery code (case, spaces and dashes do not matter)."""
    normalized = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(normalized.encode()).hexdigest()
