"""What ``keyctl totp import`` reads: otpauth URIs one per line, Google Authenticator export URIs, Aegis
plain JSON exports, and PNG/JPEG images of any of those QR codes."""

from __future__ import annotations

import json
from typing import Any

from keyctl.errors import InvalidInput
from keyctl.totp.migration import parse_migration
from keyctl.totp.model import (
    Credential,
    Entry,
    Rejected,
    check_name,
    check_parameters,
    decode_base32,
    parse_uri,
)
from keyctl.totp.qr import decode_image, looks_like_image

Parsed = Credential | Rejected
_AEGIS_FIX = "in Aegis: Settings > Import & Export > Export, plain-text JSON (encryption off)"


def parse_import(data: bytes, source: str) -> list[Parsed]:
    if looks_like_image(data):
        return _texts([(f"QR code {i}", text) for i, text in enumerate(decode_image(data, source), 1)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{source} is neither text nor a PNG/JPEG image",
            "give otpauth URIs (one per line), an Aegis JSON export or a QR code image",
        ) from None
    if text.lstrip().startswith("{"):
        return parse_aegis(text, source)
    lines = [(f"line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    return _texts([(where, line) for where, line in lines if line and not line.startswith("#")])


def _texts(items: list[tuple[str, str]]) -> list[Parsed]:
    parsed: list[Parsed] = []
    for where, text in items:
        try:
            if text.lower().startswith("otpauth-migration:"):
                parsed += parse_migration(text)
            elif text.lower().startswith("otpauth:"):
                parsed.append(parse_uri(text))
            else:
                parsed.append(Rejected(where, "not an otpauth:// or otpauth-migration:// URI"))
        except InvalidInput as error:
            parsed.append(Rejected(where, error.message))
    return parsed


def parse_aegis(text: str, source: str) -> list[Parsed]:
    try:
        document = json.loads(text)
        database = document["db"]
        header = document.get("header") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput(f"{source} is not an Aegis JSON export", _AEGIS_FIX) from None
    if isinstance(database, str) or header.get("slots"):
        raise InvalidInput(f"{source} is an encrypted Aegis export", _AEGIS_FIX)
    entries = database.get("entries") if isinstance(database, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(f"{source} is not an Aegis JSON export (no db.entries)", _AEGIS_FIX)
    return [_aegis_entry(n, item) for n, item in enumerate(entries, 1)]


def _aegis_entry(number: int, item: Any) -> Parsed:
    if not isinstance(item, dict):
        return Rejected(f"entry {number}", "malformed Aegis entry")
    issuer = str(item.get("issuer") or "").strip()
    account = str(item.get("name") or "").strip()
    label = f"{issuer}:{account}" if issuer and account else issuer or account or f"entry {number}"
    kind = str(item.get("type", ""))
    try:
        info = item["info"]
        if kind not in ("totp", "hotp", "steam"):
            return Rejected(label, f"unsupported Aegis entry type {kind[:20]!r}")
        entry = Entry(
            name=check_name(label),
            issuer=issuer,
            account=account,
            kind="hotp" if kind == "hotp" else "totp",
            algorithm=str(info.get("algo", "SHA1")),
            digits=int(info.get("digits", 6)),
            period=int(info.get("period", 30)),
            counter=int(info.get("counter", 0)) if kind == "hotp" else 0,
            encoder="steam" if kind == "steam" else "",
        )
        return Credential(check_parameters(entry), decode_base32(str(info["secret"])))
    except InvalidInput as error:
        return Rejected(label, error.message)
    except (KeyError, TypeError, ValueError, AttributeError):
        return Rejected(label, "malformed Aegis entry")
