"""Every bad input: a one-line error with a remedy, its own exit code, nothing changed, no secret shown."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import qrcode
import secretstorage

from keyctl.config import keyring_service
from keyctl.errors import ExitCode
from tests.conftest import Result, run_keyctl

from .conftest import index_bytes

Cli = Callable[..., Result]
Feed = Callable[[str], None]
SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
OTHER = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"
URI = f"otpauth://totp/Acme:bob?secret={SECRET}&issuer=Acme"


def keyring_items() -> list[tuple[str, bytes]]:
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        items = collection.search_items({"service": keyring_service()})
        return sorted((item.get_attributes()["username"], item.get_secret()) for item in items)


@pytest.fixture
def existing(cli: Cli) -> None:
    result = cli("totp", "add", "acme", "--uri", URI)
    assert result.exit_code == 0, result.stderr


def _png(tmp_path: Path, text: str | None) -> str:
    path = tmp_path / "image.png"
    if text is None:
        from PIL import Image

        Image.new("RGB", (200, 200), "white").save(path)
    else:
        buffer = io.BytesIO()
        qrcode.make(text).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())
    return str(path)


CASES: list[tuple[str, list[str], str | None, ExitCode, str]] = [
    # (id, argv after "totp", stdin, exit code, start of the error line)
    (
        "not-otpauth",
        ["add", "x", "--uri", f"https://x.example/?secret={OTHER}"],
        None,
        ExitCode.INVALID_INPUT,
        "not an otpauth URI",
    ),
    (
        "malformed",
        ["add", "x", "--uri", "-"],
        f"otpauth://totp/x?secret={OTHER}&digits=x\n",
        ExitCode.INVALID_INPUT,
        "the otpauth URI's digits= is not a number",
    ),
    (
        "bad-base32",
        ["add", "x", "--secret"],
        "not base32 1!\n",
        ExitCode.INVALID_INPUT,
        "the secret is not valid base32",
    ),
    (
        "empty-secret",
        ["add", "x", "--secret"],
        "",
        ExitCode.INVALID_INPUT,
        "expected the base32 secret on stdin",
    ),
    (
        "algorithm",
        ["add", "x", "--secret", "--algorithm", "MD5"],
        OTHER + "\n",
        ExitCode.INVALID_INPUT,
        "--algorithm: 'MD5' is not one of 'sha1', 'sha256', 'sha512'",
    ),
    (
        "digits",
        ["add", "x", "--secret", "--digits", "10"],
        OTHER + "\n",
        ExitCode.INVALID_INPUT,
        "10 digits is out of range",
    ),
    (
        "period",
        ["add", "x", "--secret", "--period", "0"],
        OTHER + "\n",
        ExitCode.INVALID_INPUT,
        "a period of 0 s is out of range",
    ),
    (
        "two-sources",
        ["add", "x", "--secret", "--uri", "-"],
        OTHER + "\n",
        ExitCode.INVALID_INPUT,
        "give exactly one of --uri, --secret, --qr",
    ),
    (
        "param-without-secret",
        ["add", "x", "--uri", "-", "--digits", "8"],
        URI,
        ExitCode.INVALID_INPUT,
        "--digits applies to --secret only",
    ),
    (
        "counter-without-hotp",
        ["add", "x", "--secret", "--counter", "3"],
        OTHER + "\n",
        ExitCode.INVALID_INPUT,
        "--counter applies to --hotp only",
    ),
    (
        "secret-in-argv",
        ["add", "x", "--secret", OTHER],
        None,
        ExitCode.INVALID_INPUT,
        "unexpected argument after NAME (not shown: it may be a secret)",
    ),
    (
        "duplicate",
        ["add", "acme", "--uri", "-"],
        f"otpauth://totp/y?secret={OTHER}",
        ExitCode.ALREADY_EXISTS,
        "a TOTP entry named 'acme' already exists",
    ),
    (
        "bad-name",
        ["add", " lead", "--secret"],
        OTHER + "\n",
        ExitCode.INVALID_INPUT,
        "' lead' is not a usable name",
    ),
    ("code-unknown", ["code", "nope"], None, ExitCode.NOT_FOUND, "no TOTP entry named 'nope'"),
    ("rename-unknown", ["rename", "nope", "x"], None, ExitCode.NOT_FOUND, "no TOTP entry named 'nope'"),
    ("rename-taken", ["rename", "acme", "acme"], None, ExitCode.ALREADY_EXISTS, "a TOTP entry named 'acme'"),
    ("remove-unknown", ["remove", "nope", "--yes"], None, ExitCode.NOT_FOUND, "no TOTP entry named 'nope'"),
    ("show-unknown", ["show", "nope", "--uri"], None, ExitCode.NOT_FOUND, "no TOTP entry named 'nope'"),
    (
        "show-nothing",
        ["show", "acme"],
        None,
        ExitCode.INVALID_INPUT,
        "give exactly one of --uri, --qr, --png",
    ),
    ("watch-json", ["code", "acme", "--watch", "--json"], None, ExitCode.INVALID_INPUT, "--watch and --json"),
    (
        "import-missing",
        ["import", "/nonexistent/file"],
        None,
        ExitCode.INVALID_INPUT,
        "cannot read /nonexistent/file",
    ),
]


@pytest.mark.parametrize(
    ("argv", "stdin_text", "exit_code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.usefixtures("existing")
def test_bad_input(
    cli: Cli, stdin: Feed, argv: list[str], stdin_text: str | None, exit_code: ExitCode, message: str
) -> None:
    before = (index_bytes(), keyring_items())
    if stdin_text is not None:
        stdin(stdin_text)
    result = cli("totp", *argv)
    assert result.exit_code == exit_code, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-2]], result.stderr
    assert errors[0].startswith(f"error: {message}"), result.stderr
    assert lines[-1].startswith("  fix: ")
    assert (index_bytes(), keyring_items()) == before
    for secret in (SECRET, OTHER):
        assert secret not in result.stdout + result.stderr
        assert secret.lower() not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "exit_code", "message"),
    [
        (None, ExitCode.INVALID_INPUT, "no QR code found in"),
        ("https://example.com/not-a-totp", ExitCode.INVALID_INPUT, "the QR code in"),
        (f"otpauth://totp/x?secret={OTHER}&algorithm=SHA3", ExitCode.INVALID_INPUT, "unsupported algorithm"),
        ("otpauth-migration://offline?data=CgA%3D", ExitCode.INVALID_INPUT, "the QR code in"),
    ],
    ids=["no-qr", "not-otpauth", "bad-parameter", "migration"],
)
@pytest.mark.usefixtures("existing")
def test_bad_qr_images(
    cli: Cli, tmp_path: Path, content: str | None, exit_code: ExitCode, message: str
) -> None:
    before = (index_bytes(), keyring_items())
    result = cli("totp", "add", "x", "--qr", _png(tmp_path, content))
    assert result.exit_code == exit_code
    assert result.stderr.startswith(f"error: {message}")
    assert (index_bytes(), keyring_items()) == before
    assert OTHER not in result.stderr


def test_force_replaces_a_duplicate(cli: Cli, stdin: Feed, existing: None) -> None:
    stdin(OTHER + "\n")
    assert cli("totp", "add", "acme", "--secret", "--force").exit_code == 0
    assert keyring_items() == [("totp:acme", OTHER.encode())]


def test_a_damaged_index_is_a_state_error(cli: Cli, existing: None) -> None:
    from keyctl.config import data_dir

    (data_dir() / "totp.json").write_text('{"version": 1, "entries": [{"name": 1}]}')
    result = cli("totp", "list")
    assert result.exit_code == ExitCode.STATE
    assert "is damaged" in result.stderr


def test_debug_logs_never_show_the_secret(existing: None) -> None:
    """As separate processes, so that --debug really configures logging to stderr."""
    outputs = [
        run_keyctl(["--debug", "totp", "add", "other", "--secret", "--hotp"], stdin=OTHER + "\n"),
        run_keyctl(["--debug", "totp", "code", "other", "--json"]),
        run_keyctl(["--debug", "totp", "code", "acme"]),
        run_keyctl(["--debug", "totp", "rename", "other", "renamed"]),
        run_keyctl(["--debug", "totp", "list", "--json"]),
        run_keyctl(["--debug", "totp", "remove", "renamed", "--yes"]),
        run_keyctl(["--debug", "totp", "code", "nope"]),
    ]
    assert [result.exit_code for result in outputs] == [0, 0, 0, 0, 0, 0, ExitCode.NOT_FOUND]
    logged = "".join(result.stderr for result in outputs)
    assert "DEBUG keyctl.totp.vault: added TOTP entry 'other'" in logged  # the log is really on
    assert "HOTP entry 'other' advanced to counter 1" in logged
    assert "Traceback" in logged  # --debug shows the NotFound traceback, still without secrets
    for secret in (SECRET, OTHER):
        assert secret not in logged
        assert secret.lower() not in logged
        assert secret not in "".join(result.stdout for result in outputs)


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


def test_a_failed_index_write_rolls_the_keyring_back(
    cli: Cli, stdin: Feed, existing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (index_bytes(), keyring_items())
    monkeypatch.setattr("keyctl.fileio.atomic_write", _disk_full)
    stdin(OTHER + "\n")
    added = cli("totp", "add", "new", "--secret")
    stdin(OTHER + "\n")
    replaced = cli("totp", "add", "acme", "--secret", "--force")
    renamed = cli("totp", "rename", "acme", "renamed")
    for result in (added, replaced, renamed):
        assert result.exit_code == ExitCode.STATE, result.stderr
        assert "No space left on device" in result.stderr
    assert (index_bytes(), keyring_items()) == before  # the old secret of 'acme' is back


def test_a_failed_keyring_delete_restores_the_index(
    cli: Cli, existing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyctl import secrets
    from keyctl.errors import SecretStoreError

    def refuse(account: str) -> None:
        raise SecretStoreError("the test keyring refuses to delete", "")

    before = (index_bytes(), keyring_items())
    monkeypatch.setattr(secrets, "delete_secret", refuse)
    removed = cli("totp", "remove", "acme", "--yes")
    renamed = cli("totp", "rename", "acme", "renamed")
    for result in (removed, renamed):
        assert result.exit_code == ExitCode.SECRET_STORE, result.stderr
    assert index_bytes() == before[0]
    assert [item for item in keyring_items() if item[0] != "totp:renamed"] == before[1]
