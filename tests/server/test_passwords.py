"""The bundled common-password list and the password rules."""

from __future__ import annotations

from importlib import resources

import pytest

from keyctl.server import passwords
from tests.server.build_common_passwords import build


def test_bundled_list_is_exactly_what_the_build_script_makes() -> None:
    bundled = (resources.files("keyctl.server") / "common-passwords.txt").read_text(encoding="utf-8")
    assert bundled == build()
    assert len(bundled.splitlines()) == 30_000


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("eleven char", True),
        ("1qaz2wsx3edc", True),  # on the list
        ("QWERTY123456", True),  # on the list, any case
        ("!!Sunshine2024", True),  # a listed word wrapped in digits and punctuation
        ("sunshine sunset", False),
        ("correct horse battery staple", False),
        ("x" * 1025, True),
    ],
)
def test_password_rules(password: str, refused: bool) -> None:
    assert (passwords.weakness(password) is not None) is refused


def test_hashes_are_salted_scrypt_and_verify() -> None:
    first = passwords.hash_password("correct horse battery staple")
    second = passwords.hash_password("correct horse battery staple")
    assert first.startswith("scrypt$16384$8$1$")
    assert first != second
    assert passwords.verify_password("correct horse battery staple", first)
    assert not passwords.verify_password("correct horse battery stapler", first)
