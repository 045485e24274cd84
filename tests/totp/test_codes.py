"""Codes: RFC 6238 Appendix B, and Debian's oathtool for random secrets, times, digits and periods."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyctl.totp.codes import STEAM_ALPHABET, hotp, totp

from .conftest import oathtool

# RFC 6238 Appendix B: each algorithm has its own seed (the ASCII digits repeated to the hash length).
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_appendix_b(at: int, sha1: str, sha256: str, sha512: str) -> None:
    for algorithm, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        assert totp(SEEDS[algorithm], at, 30, 8, algorithm).code == expected


def test_rfc4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871"]
    assert [hotp(SEEDS["SHA1"], counter) for counter in range(9)] == expected


def test_remaining_seconds() -> None:
    code = totp(SEEDS["SHA1"], 1111111109.9, period=30)
    assert (code.remaining, code.period, code.counter) == (30 - 1111111109 % 30, 30, None)


@settings(max_examples=40, deadline=None)
@given(
    secret=st.sampled_from([10, 16, 20, 32, 64]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    at=st.integers(min_value=0, max_value=2**34),
    algorithm=st.sampled_from(["SHA1", "SHA256", "SHA512"]),
    digits=st.sampled_from([6, 7, 8]),
    period=st.sampled_from([15, 30, 45, 60, 90]),
)
def test_totp_matches_oathtool(secret: bytes, at: int, algorithm: str, digits: int, period: int) -> None:
    """10-byte (80-bit) secrets included: pyotp 2.12 would refuse them."""
    ours = totp(secret, at, period, digits, algorithm).code
    assert ours == oathtool(secret, at=at, algorithm=algorithm, digits=digits, period=period)


@settings(max_examples=15, deadline=None)
@given(secret=st.binary(min_size=10, max_size=40), counter=st.integers(min_value=0, max_value=2**40))
def test_hotp_matches_oathtool(secret: bytes, counter: int) -> None:
    assert hotp(secret, counter, 6) == oathtool(secret, counter=counter, digits=6)


@settings(max_examples=10, deadline=None)
@given(secret=st.binary(min_size=10, max_size=40), at=st.integers(min_value=0, max_value=2**33))
def test_steam_codes_agree_with_oathtools_truncation(secret: bytes, at: int) -> None:
    """A Steam code writes the 31-bit truncated value in base 26; oathtool -d 8 gives it mod 10^8.

    Exactly one 31-bit value is consistent with both, so the two computations must agree on it."""
    steam = totp(secret, at, encoder="steam").code
    assert len(steam) == 5
    assert set(steam) <= set(STEAM_ALPHABET)
    low = sum(STEAM_ALPHABET.index(char) * 26**i for i, char in enumerate(steam))
    decimal = int(oathtool(secret, at=at, digits=8))
    candidates = [v for v in range(decimal, 2**31, 10**8) if v % 26**5 == low]
    assert len(candidates) == 1
