"""The browser's anti-phishing rules, applied before any authenticator is touched.

The origin is the server URL's origin; the options' rpId must be that host or a registrable suffix of it
(public suffix list, fido2's ``verify_rp_id``); https is required except for localhost. ``--origin``
replaces the origin only together with ``--insecure-origin-override``: the rpId is then checked against
the given origin's host, and its scheme is not.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fido2.rpid import verify_rp_id

from keyctl.errors import InvalidInput, PhishingRefused


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def origin_of(url: str, what: str = "--server") -> str:
    """``scheme://host[:port]`` of an http(s) URL (default ports dropped, as browsers serialise it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{what} {url!r} is not a valid URL", "give e.g. https://example.com") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput(f"{what} {url!r} is not an http(s) URL", "give e.g. https://example.com")
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def require_secure(origin: str) -> None:
    """Refuse a plain-http origin other than localhost, as a browser refuses WebAuthn there."""
    parts = urlsplit(origin)
    if parts.scheme != "https" and not _is_localhost(parts.hostname or ""):
        raise PhishingRefused(
            f"passkeys need https: {origin} is not a secure origin",
            "use the server's https URL (plain http is accepted only for localhost)",
        )


def rp_id_fits_host(rp_id: str, origin: str) -> bool:
    """verify_rp_id's host rules without its scheme rule (only for --insecure-origin-override)."""
    host = urlsplit(origin).hostname or ""
    return verify_rp_id(rp_id, "https://" + host) or (host == rp_id and _is_localhost(host))


def check_rp_id(rp_id: str | None, origin: str, insecure: bool = False) -> str:
    """The effective rpId for ``origin``; PhishingRefused unless a browser at that origin would agree."""
    effective = rp_id if rp_id is not None else (urlsplit(origin).hostname or "")
    fits = rp_id_fits_host(effective, origin) if insecure else verify_rp_id(effective, origin)
    if not fits:
        raise PhishingRefused(
            f"the server at {origin} asked for passkeys of {effective!r}, which that origin may not use",
            "this looks like phishing: check the server URL (nothing was sent to the authenticator)",
        )
    return effective
