"""One-time-password accounts: the non-secret entry, its secret, otpauth URIs and base32.

Error messages here never quote the secret or the URI that carries it: they name the field that was wrong.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from keyctl.errors import InvalidInput
from keyctl.totp.codes import ALGORITHMS, STEAM_DIGITS

Kind = Literal["totp", "hotp"]
MIN_DIGITS, MAX_DIGITS = 6, 8
MAX_PERIOD = 24 * 3600
_NAME_MAX = 128
_URI_HELP = "give an otpauth:// URI such as otpauth://totp/Issuer:account?secret=BASE32&issuer=Issuer"


@dataclass(frozen=True)
class Entry:
    """What the index file keeps about an account: everything but the secret."""

    name: str
    issuer: str = ""
    account: str = ""
    kind: Kind = "totp"
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30
    counter: int = 0  # HOTP only: the counter of the next code
    encoder: str = ""  # "steam" for Steam Guard codes (5 characters)

    def describe(self) -> str:
        if self.encoder == "steam":
            return "Steam Guard, 5 characters, 30 s"
        timing = f"{self.period} s" if self.kind == "totp" else f"counter {self.counter}"
        return f"{self.kind.upper()}, {self.algorithm}, {self.digits} digits, {timing}"


@dataclass(frozen=True)
class Credential:
    """An entry with its secret: lives only between a parser and the keyring."""

    entry: Entry
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Rejected:
    """Something an import could not use, and why (never the secret)."""

    label: str
    reason: str


def check_name(name: str) -> str:
    if not name or name != name.strip() or len(name) > _NAME_MAX or not name.isprintable():
        raise InvalidInput(
            f"{name[:_NAME_MAX]!r} is not a usable name",
            f"use 1 to {_NAME_MAX} printable characters without leading or trailing spaces",
        )
    return name


def decode_base32(text: str) -> bytes:
    """Decode a base32 secret; spaces, dashes, lower case and missing padding are accepted."""
    compact = re.sub(r"[\s-]", "", text).upper().rstrip("=")
    remedy = "a TOTP secret uses the letters A-Z and digits 2-7 only (spaces and lower case are fine)"
    if not compact:
        raise InvalidInput("the secret is empty", remedy)
    if not re.fullmatch(r"[A-Z2-7]+", compact) or len(compact) % 8 in (1, 3, 6):
        raise InvalidInput("the secret is not valid base32", remedy)
    try:
        return base64.b32decode(compact + "=" * (-len(compact) % 8))
    except binascii.Error:
        raise InvalidInput("the secret is not valid base32", remedy) from None


def encode_base32(secret: bytes) -> str:
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def check_parameters(entry: Entry) -> Entry:
    """Validate the parameters of ``entry`` (the name is checked separately)."""
    algorithm = entry.algorithm.upper().replace("-", "")
    if algorithm not in ALGORITHMS:
        raise InvalidInput(
            f"unsupported algorithm {entry.algorithm[:20]!r}", f"use one of {', '.join(ALGORITHMS)}"
        )
    if entry.encoder not in ("", "steam"):
        raise InvalidInput(f"unsupported encoder {entry.encoder[:20]!r}", "only encoder=steam is known")
    if entry.encoder == "steam":
        return replace(entry, kind="totp", algorithm="SHA1", digits=STEAM_DIGITS, period=30)
    if not MIN_DIGITS <= entry.digits <= MAX_DIGITS:
        raise InvalidInput(
            f"{entry.digits} digits is out of range", f"use {MIN_DIGITS} to {MAX_DIGITS} digits (6 is usual)"
        )
    if entry.kind == "totp" and not 1 <= entry.period <= MAX_PERIOD:
        raise InvalidInput(f"a period of {entry.period} s is out of range", "use e.g. 30 (seconds)")
    if entry.counter < 0:
        raise InvalidInput(f"the HOTP counter {entry.counter} is negative", "use a counter of 0 or more")
    return replace(entry, algorithm=algorithm)


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise InvalidInput(f"the otpauth URI's {key}= is not a number", _URI_HELP)
    return int(raw)


def parse_uri(uri: str, name: str | None = None) -> Credential:
    """Parse ``otpauth://TYPE/LABEL?secret=...``; ``name`` defaults to the label."""
    uri = uri.strip()
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidInput("malformed otpauth URI", _URI_HELP) from None
    if parts.scheme.lower() == "otpauth-migration":
        raise InvalidInput(
            "this is a Google Authenticator export (otpauth-migration://), not one account",
            "import it with: keyctl totp import FILE",
        )
    if parts.scheme.lower() != "otpauth":
        shown = parts.scheme[:20] if parts.scheme else "none"
        raise InvalidInput(f"not an otpauth URI (scheme: {shown})", _URI_HELP)
    kind = parts.netloc.lower()
    if kind not in ("totp", "hotp", "steam"):
        raise InvalidInput(f"unknown otpauth type {parts.netloc[:20]!r}", "the type must be totp or hotp")
    # Not a form query: '+' is a literal plus in otpauth parameters (issuers such as "Q+A").
    params = {k.lower(): v for k, v in parse_qsl(parts.query.replace("+", "%2B"), keep_blank_values=True)}
    if "secret" not in params:
        raise InvalidInput("the otpauth URI has no secret= parameter", _URI_HELP)
    secret = decode_base32(params["secret"])
    label = unquote(parts.path.lstrip("/"))
    # An issuer holds no colon (Key URI format), so the first one separates it; an account may hold more.
    label_issuer, colon, account = label.partition(":")
    if not colon:
        label_issuer, account = "", label
    issuer = params.get("issuer", "") or label_issuer.strip()
    entry = Entry(
        name=check_name(name if name is not None else label.strip()),
        issuer=issuer,
        account=account.strip(),
        kind="hotp" if kind == "hotp" else "totp",
        algorithm=params.get("algorithm", "") or "SHA1",
        digits=_int_param(params, "digits", 6),
        period=_int_param(params, "period", 30),
        counter=_int_param(params, "counter", 0),
        encoder="steam" if kind == "steam" else params.get("encoder", "").lower(),
    )
    if entry.kind == "hotp" and "counter" not in params:
        raise InvalidInput("the HOTP URI has no counter= parameter", "add counter=N (usually 0)")
    return Credential(check_parameters(entry), secret)


def build_uri(credential: Credential) -> str:
    """The otpauth URI of ``credential`` (contains the secret: only for the user's explicit request)."""
    entry = credential.entry
    account = entry.account or entry.name
    # Without an issuer, a colon in the account would read as the issuer separator: an empty issuer keeps it.
    label = f"{entry.issuer}:{account}" if entry.issuer or ":" in account else account
    params = {"secret": encode_base32(credential.secret)}
    if entry.issuer:
        params["issuer"] = entry.issuer
    if entry.encoder == "steam":
        params["encoder"] = "steam"
    else:
        params |= {"algorithm": entry.algorithm, "digits": str(entry.digits)}
        if entry.kind == "totp":
            params["period"] = str(entry.period)
        else:
            params["counter"] = str(entry.counter)
    return f"otpauth://{entry.kind}/{quote(label, safe=':@')}?{urlencode(params, quote_via=quote)}"
