"""otpauth URIs and base32: parsing, building, and every malformed input (never echoing the secret)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keyctl.errors import InvalidInput
from keyctl.totp.model import Credential, Entry, build_uri, decode_base32, encode_base32, parse_uri

SECRET = "JBSWY3DPEHPK3PXP"  # 80 bits, as many real services issue


def test_base32_accepts_spaces_lower_case_and_missing_padding() -> None:
    expected = decode_base32(SECRET)
    assert decode_base32("jbsw y3dp ehpk 3pxp") == expected
    assert decode_base32("JBSW-Y3DP-EHPK-3PXP\n") == expected
    assert decode_base32("MZXW6===") == decode_base32("mzxw6") == b"foo"


@pytest.mark.parametrize("bad", ["", "   ", "JBSWY3DP!", "JBSWY3D1", "A", "ABC", "ABCDEF", "ÄÖÜ"])
def test_bad_base32(bad: str) -> None:
    with pytest.raises(InvalidInput) as error:
        decode_base32(bad)
    assert "secret" in error.value.message
    assert len(bad.strip()) < 4 or bad not in error.value.message + error.value.remedy


def test_parse_a_full_uri() -> None:
    credential = parse_uri(
        "otpauth://totp/ACME%20Co:john.doe@example.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"
        "&issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60"
    )
    assert credential.entry == Entry(
        name="ACME Co:john.doe@example.com",
        issuer="ACME Co",
        account="john.doe@example.com",
        algorithm="SHA256",
        digits=8,
        period=60,
    )
    assert credential.secret == decode_base32("HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ")
    assert SECRET not in repr(credential)


def test_defaults_name_override_and_literal_plus() -> None:
    credential = parse_uri(f"otpauth://totp/alice?secret={SECRET.lower()}&issuer=Q+A", name="work")
    assert credential.entry == Entry(name="work", issuer="Q+A", account="alice")


def test_hotp_and_steam() -> None:
    hotp = parse_uri(f"otpauth://hotp/x?secret={SECRET}&counter=42")
    assert (hotp.entry.kind, hotp.entry.counter) == ("hotp", 42)
    steam = parse_uri(f"otpauth://totp/Steam:me?secret={SECRET}&encoder=steam")
    assert (steam.entry.encoder, steam.entry.digits) == ("steam", 5)
    assert parse_uri(f"otpauth://steam/Steam:me?secret={SECRET}").entry == steam.entry


BAD_URIS = [
    ("https://example.com/?secret=" + SECRET, "not an otpauth URI"),
    ("JBSWY3DPEHPK3PXP", "not an otpauth URI"),
    ("otpauth://totp/x", "no secret= parameter"),
    ("otpauth://xotp/x?secret=" + SECRET, "unknown otpauth type"),
    ("otpauth://totp/x?secret=" + SECRET + "1", "not valid base32"),
    ("otpauth://totp/x?secret=" + SECRET + "&algorithm=MD5", "unsupported algorithm"),
    ("otpauth://totp/x?secret=" + SECRET + "&digits=9", "out of range"),
    ("otpauth://totp/x?secret=" + SECRET + "&digits=5", "out of range"),
    ("otpauth://totp/x?secret=" + SECRET + "&digits=six", "not a number"),
    ("otpauth://totp/x?secret=" + SECRET + "&period=0", "out of range"),
    ("otpauth://hotp/x?secret=" + SECRET, "no counter="),
    ("otpauth://totp/x?secret=" + SECRET + "&encoder=yandex", "unsupported encoder"),
    ("otpauth://totp/?secret=" + SECRET, "not a usable name"),
    ("otpauth-migration://offline?data=AA", "Google Authenticator export"),
    ("otpauth://[::1/x?secret=" + SECRET, "malformed"),
]


@pytest.mark.parametrize(("uri", "why"), BAD_URIS)
def test_bad_uris(uri: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as error:
        parse_uri(uri)
    shown = error.value.message + error.value.remedy
    assert SECRET not in shown
    assert "\n" not in shown


entries = st.builds(
    Entry,
    name=st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1, max_size=30)
    .map(str.strip)
    .filter(lambda s: bool(s) and s.isprintable()),  # what check_name accepts
    issuer=st.text(st.characters(codec="utf-8", categories=["L", "N"]), max_size=10),
    account=st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), max_size=20).filter(
        lambda s: ":" not in s and s == s.strip()
    ),
    kind=st.sampled_from(["totp", "hotp"]),
    algorithm=st.sampled_from(["SHA1", "SHA256", "SHA512"]),
    digits=st.integers(6, 8),
    period=st.integers(1, 300),
    counter=st.integers(0, 2**40),
)


@settings(max_examples=60, deadline=None)
@given(entry=entries, secret=st.binary(min_size=1, max_size=64))
# A colon in a name used as the account, with no issuer, is not read back as an issuer's separator.
@example(entry=Entry(name="work:laptop", issuer="", account=""), secret=b"\x00")
@example(entry=Entry(name="0:", issuer="", account=""), secret=b"\x00")
def test_build_then_parse_round_trips(entry: Entry, secret: bytes) -> None:
    parsed = parse_uri(build_uri(Credential(entry, secret)), name=entry.name)
    expected_account = entry.account or entry.name
    assert parsed.secret == secret
    assert parsed.entry.issuer == entry.issuer
    assert parsed.entry.account == expected_account.strip()
    assert (parsed.entry.kind, parsed.entry.algorithm, parsed.entry.digits) == (
        entry.kind,
        entry.algorithm,
        entry.digits,
    )
    if entry.kind == "totp":
        assert parsed.entry.period == entry.period
    else:
        assert parsed.entry.counter == entry.counter
    assert encode_base32(secret) in build_uri(Credential(entry, secret))
