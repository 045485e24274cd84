"""Importers: Google Authenticator migration (protobuf built here by a small encoder), Aegis JSON, URI lists,
QR images (generated with qrcode, decoded with zxing-cpp), and the `keyctl totp import` summary."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import qrcode

from keyctl import secrets
from keyctl.errors import ExitCode, InvalidInput
from keyctl.totp import vault
from keyctl.totp.codes import totp
from keyctl.totp.migration import parse_migration
from keyctl.totp.model import Credential, Rejected, decode_base32, encode_base32
from tests.conftest import Result

from .conftest import index_bytes, index_names, oathtool

Cli = Callable[..., Result]


# --- a minimal protobuf encoder (independent of the parser under test) ---
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def otp_parameters(
    secret: bytes,
    name: str,
    issuer: str = "",
    algorithm: int = 1,
    digits: int = 1,
    kind: int = 2,
    counter: int = 0,
) -> bytes:
    message = _field(1, secret) + _field(2, name) + _field(4, algorithm) + _field(5, digits) + _field(6, kind)
    if issuer:
        message += _field(3, issuer)
    if counter:
        message += _field(7, counter)
    return message


def migration_uri(*accounts: bytes) -> str:
    payload = b"".join(_field(1, account) for account in accounts) + _field(2, 1) + _field(3, 1)
    return "otpauth-migration://offline?data=" + quote(base64.b64encode(payload).decode(), safe="")


SECRETS = [bytes(range(i, i + 10)) for i in (0, 40, 80)] + [
    b"\xfb\xff" * 10
]  # 80-bit secrets; '+'/'/' in base64
ACCOUNTS = [
    otp_parameters(SECRETS[0], "GitHub:alice", "GitHub"),
    otp_parameters(SECRETS[1], "bob@example.com", "Example", algorithm=2, digits=2),
    otp_parameters(SECRETS[2], "counter", "Bank", kind=1, counter=7),
    otp_parameters(SECRETS[3], "plus", "Plus"),
]


def test_migration_accounts_are_parsed() -> None:
    uri = migration_uri(*ACCOUNTS)
    assert "%2B" in uri  # the payload has a '+', correctly escaped here
    parsed = parse_migration(uri)
    assert all(isinstance(item, Credential) for item in parsed)
    credentials = [item for item in parsed if isinstance(item, Credential)]
    assert [c.entry.name for c in credentials] == [
        "GitHub:alice",
        "Example:bob@example.com",
        "Bank:counter",
        "Plus:plus",
    ]
    assert [c.secret for c in credentials] == SECRETS
    bob, bank = credentials[1].entry, credentials[2].entry
    assert (bob.algorithm, bob.digits, bob.kind, bob.period) == ("SHA256", 8, "totp", 30)
    assert (bank.kind, bank.counter) == ("hotp", 7)


def test_plus_in_data_survives_raw_and_form_decoded() -> None:
    data = base64.b64encode(_field(1, otp_parameters(SECRETS[3], "plus", "Plus"))).decode()
    assert "+" in data
    raw = f"otpauth-migration://offline?data={data}"  # '+' left unescaped, as QR generators do
    form_decoded = raw.replace("+", " ")  # what parsing it as a form query would have made of it
    for uri in (raw, form_decoded):
        [credential] = parse_migration(uri)
        assert isinstance(credential, Credential)
        assert credential.secret == SECRETS[3]


def test_md5_and_empty_secret_are_rejected_with_reasons() -> None:
    parsed = parse_migration(
        migration_uri(otp_parameters(b"x" * 10, "old", "MD5 Inc", algorithm=4), otp_parameters(b"", "empty"))
    )
    assert parsed == [
        Rejected("MD5 Inc:old", "unsupported algorithm 'MD5'"),
        Rejected("empty", "the account has no secret"),
    ]


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("otpauth-migration://offline?data=%%%", "not valid base64"),
        ("otpauth-migration://offline?data=" + base64.b64encode(b"\x0a\xff").decode(), "damaged"),
        ("otpauth-migration://online?data=AA", "not a Google Authenticator export URI"),
    ],
)
def test_bad_migration_uris(uri: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_migration(uri)


def _png(text: str) -> bytes:
    image = qrcode.make(text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_import_a_migration_qr_image(cli: Cli, tmp_path: Path) -> None:
    image = tmp_path / "export.png"
    image.write_bytes(_png(migration_uri(*ACCOUNTS)))
    result = cli("totp", "import", str(image), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == {
        "added": ["GitHub:alice", "Example:bob@example.com", "Bank:counter", "Plus:plus"],
        "skipped": [],
        "rejected": [],
    }
    assert secrets.get_secret(vault.account("GitHub:alice")) == encode_base32(SECRETS[0])
    code = json.loads(cli("totp", "code", "Example:bob@example.com", "--json").stdout)
    # a code and the time it was made at can straddle a period boundary: compare with the matching one
    expected = {oathtool(SECRETS[1], at=int(t), algorithm="SHA256", digits=8) for t in _now_window()}
    assert code["code"] in expected
    assert cli("totp", "code", "Bank:counter").stdout.strip() == oathtool(SECRETS[2], counter=7)
    assert cli("totp", "code", "Bank:counter").stdout.strip() == oathtool(SECRETS[2], counter=8)


def _now_window() -> list[float]:
    import time

    now = time.time()
    return [now - 2, now, now + 2]


def test_a_second_import_skips_duplicates_and_reports_rejections(cli: Cli, tmp_path: Path) -> None:
    listing = tmp_path / "uris.txt"
    listing.write_text(
        "# exported by hand\n"
        f"otpauth://totp/GitHub:alice?secret={encode_base32(SECRETS[0])}&issuer=GitHub\n"
        "\n"
        "https://example.com/not-otp\n"
        f"otpauth://totp/bad?secret={encode_base32(SECRETS[1])}&digits=12\n"
        f"{migration_uri(ACCOUNTS[1])}\n"
        f"otpauth://totp/GitHub:alice?secret={encode_base32(SECRETS[2])}&issuer=GitHub\n"
    )
    result = cli("totp", "import", str(listing))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert result.stdout.splitlines() == [
        "added     GitHub:alice",
        "added     Example:bob@example.com",
        "skipped   GitHub:alice: an entry of that name exists",
        "rejected  line 4: not an otpauth:// or otpauth-migration:// URI",
        "rejected  line 5: 12 digits is out of range",
        "2 added, 1 skipped, 2 rejected",
    ]
    assert result.stderr.startswith("error: 2 of 5 entries were rejected\n")
    assert secrets.get_secret(vault.account("GitHub:alice")) == encode_base32(SECRETS[0])  # first one won
    again = cli("totp", "import", str(listing), "--json")
    assert json.loads(again.stdout)["added"] == []
    skipped = [s["name"] for s in json.loads(again.stdout)["skipped"]]
    assert skipped == ["GitHub:alice", "Example:bob@example.com", "GitHub:alice"]
    assert sorted(index_names()) == ["Example:bob@example.com", "GitHub:alice"]
    for secret in SECRETS:
        assert encode_base32(secret) not in result.stdout + result.stderr + again.stdout + again.stderr


AEGIS = {
    "version": 1,
    "header": {"slots": None, "params": None},
    "db": {
        "version": 3,
        "entries": [
            {
                "type": "totp",
                "uuid": "1",
                "name": "alice",
                "issuer": "Proton",
                "note": "",
                "icon": None,
                "info": {"secret": encode_base32(SECRETS[0]), "algo": "SHA512", "digits": 8, "period": 60},
            },
            {
                "type": "hotp",
                "uuid": "2",
                "name": "hw",
                "issuer": "",
                "icon": None,
                "info": {"secret": encode_base32(SECRETS[1]), "algo": "SHA1", "digits": 6, "counter": 3},
            },
            {
                "type": "steam",
                "uuid": "3",
                "name": "gamer",
                "issuer": "Steam",
                "icon": None,
                "info": {"secret": encode_base32(SECRETS[2]), "algo": "SHA1", "digits": 5, "period": 30},
            },
            {
                "type": "motp",
                "uuid": "4",
                "name": "old",
                "issuer": "",
                "icon": None,
                "info": {"secret": "abcd", "pin": "1234"},
            },
            {
                "type": "totp",
                "uuid": "5",
                "name": "broken",
                "issuer": "X",
                "icon": None,
                "info": {"secret": "not base32!", "algo": "SHA1", "digits": 6, "period": 30},
            },
        ],
    },
}


def test_aegis_plain_json(cli: Cli, tmp_path: Path) -> None:
    export = tmp_path / "aegis.json"
    export.write_text(json.dumps(AEGIS))
    result = cli("totp", "import", str(export), "--json")
    assert result.exit_code == ExitCode.INVALID_INPUT
    summary = json.loads(result.stdout)
    assert summary["added"] == ["Proton:alice", "hw", "Steam:gamer"]
    assert summary["rejected"] == [
        {"entry": "old", "reason": "unsupported Aegis entry type 'motp'"},
        {"entry": "X:broken", "reason": "the secret is not valid base32"},
    ]
    listed = {row["name"]: row for row in json.loads(cli("totp", "list", "--json").stdout)}
    assert (listed["Proton:alice"]["algorithm"], listed["Proton:alice"]["digits"]) == ("SHA512", 8)
    assert listed["Proton:alice"]["period"] == 60
    assert (listed["hw"]["type"], listed["hw"]["counter"]) == ("hotp", 3)
    assert listed["Steam:gamer"]["type"] == "steam"
    assert cli("totp", "code", "hw").stdout.strip() == oathtool(SECRETS[1], counter=3)
    steam = cli("totp", "code", "Steam:gamer").stdout.strip()
    assert steam in {totp(SECRETS[2], t, encoder="steam").code for t in _now_window()}


def test_encrypted_aegis_is_refused_and_nothing_changes(cli: Cli, tmp_path: Path) -> None:
    export = tmp_path / "aegis.json"
    export.write_text(json.dumps({**AEGIS, "header": {"slots": [{"type": 1}], "params": {}}, "db": "b64=="}))
    result = cli("totp", "import", str(export))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert result.stderr.splitlines()[0] == f"error: {export} is an encrypted Aegis export"
    assert index_bytes() is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "no accounts found"),
        (b"\xff\xfe\x00garbage", "neither text nor a PNG/JPEG image"),
        (b"{not json", "not an Aegis JSON export"),
        (b"\x89PNG\r\n\x1a\nbroken", "not a readable PNG or JPEG image"),
    ],
)
def test_unreadable_imports(cli: Cli, tmp_path: Path, content: bytes, why: str) -> None:
    source = tmp_path / "input"
    source.write_bytes(content)
    result = cli("totp", "import", str(source))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert why in result.stderr
    assert index_bytes() is None


def test_import_from_stdin(cli: Cli, stdin: Callable[[str], None]) -> None:
    stdin(f"otpauth://totp/a?secret={encode_base32(SECRETS[0])}\n")
    result = cli("totp", "import", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1 added, 0 skipped, 0 rejected"
    assert decode_base32(secrets.get_secret(vault.account("a")) or "") == SECRETS[0]
