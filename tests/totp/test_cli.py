"""`keyctl totp` commands in-process (NO_COLOR, 120 columns), against the real test Secret Service."""

from __future__ import annotations

import io
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from keyctl import secrets
from keyctl.errors import ExitCode
from keyctl.totp import vault
from keyctl.totp.codes import totp
from keyctl.totp.model import decode_base32
from keyctl.totp.qr import QUIET_ZONE, matrix
from tests.conftest import Result

from .conftest import index_bytes, index_names, oathtool

Cli = Callable[..., Result]
Feed = Callable[[str], None]
SECRET = "JBSWY3DPEHPK3PXP"
SECRET_BYTES = decode_base32(SECRET)
URI = f"otpauth://totp/GitHub:alice?secret={SECRET}&issuer=GitHub"


def _codes_around_now(secret: bytes, **kw: object) -> set[str]:
    now = time.time()
    return {totp(secret, t, **kw).code for t in (now - 3, now, now + 3)}  # type: ignore[arg-type]


def test_add_with_a_secret_from_stdin_then_code(cli: Cli, stdin: Feed) -> None:
    stdin("jbsw y3dp ehpk 3pxp\n")
    result = cli("totp", "add", "gh", "--secret", "--issuer", "GitHub")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "added gh (TOTP, SHA1, 6 digits, 30 s)\n"
    assert result.stdout == ""
    code = cli("totp", "code", "gh").stdout.strip()
    assert code in {oathtool(SECRET_BYTES, at=int(time.time()) + d) for d in (-3, 0)}
    data = json.loads(cli("totp", "code", "gh", "--json").stdout)
    assert set(data) == {"name", "code", "type", "remaining", "period", "counter"}
    assert (data["name"], data["type"], data["period"], data["counter"]) == ("gh", "totp", 30, None)
    assert 1 <= data["remaining"] <= 30
    assert data["code"] in _codes_around_now(SECRET_BYTES)


def test_add_with_parameters(cli: Cli, stdin: Feed) -> None:
    stdin(SECRET + "\n")
    result = cli(
        "totp", "add", "long", "--secret", "--digits", "8", "--period", "60", "--algorithm", "sha512"
    )
    assert result.exit_code == 0, result.stderr
    code = cli("totp", "code", "long").stdout.strip()
    assert code in _codes_around_now(SECRET_BYTES, period=60, digits=8, algorithm="SHA512")


def test_hotp_counter_is_saved_before_the_code_is_printed(cli: Cli, stdin: Feed) -> None:
    stdin(SECRET + "\n")
    assert cli("totp", "add", "hw", "--secret", "--hotp", "--counter", "5").exit_code == 0
    first = json.loads(cli("totp", "code", "hw", "--json").stdout)
    assert first == {
        "name": "hw",
        "code": oathtool(SECRET_BYTES, counter=5),
        "type": "hotp",
        "remaining": None,
        "period": None,
        "counter": 5,
    }
    assert cli("totp", "code", "hw").stdout.strip() == oathtool(SECRET_BYTES, counter=6)
    assert json.loads(index_bytes() or b"")["entries"][0]["counter"] == 7


def test_add_from_uri_argument_warns_about_argv(cli: Cli) -> None:
    result = cli("totp", "add", "gh", "--uri", URI)
    assert result.exit_code == 0, result.stderr
    assert "warning: a URI on the command line shows in 'ps'" in result.stderr
    assert secrets.get_secret(vault.account("gh")) == SECRET


def test_add_from_uri_on_stdin_and_qr(cli: Cli, stdin: Feed, tmp_path: Path) -> None:
    stdin(URI + "\n")
    assert cli("totp", "add", "from-stdin", "--uri", "-").exit_code == 0
    png = tmp_path / "qr.png"
    assert cli("totp", "show", "from-stdin", "--png", str(png)).exit_code == 0
    result = cli("totp", "add", "from-qr", "--qr", str(png))
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(cli("totp", "list", "--json").stdout)}
    assert rows["from-qr"] == {**rows["from-stdin"], "name": "from-qr"}
    assert secrets.get_secret(vault.account("from-qr")) == SECRET


def test_list_table_and_json_never_show_secrets(cli: Cli, stdin: Feed) -> None:
    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    stdin(SECRET + "\n")
    assert (
        cli("totp", "add", "bank", "--secret", "--hotp", "--digits", "8", "--algorithm", "SHA256").exit_code
        == 0
    )
    table = cli("totp", "list")
    assert table.exit_code == 0
    assert table.stdout.splitlines() == [
        "┏━━━━━━┳━━━━━━━━┳━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┓",
        "┃ name ┃ issuer ┃ type ┃ digits ┃ period ┃ algorithm ┃",
        "┡━━━━━━╇━━━━━━━━╇━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━┩",
        "│ bank │        │ hotp │ 8      │ -      │ SHA256    │",
        "│ gh   │ GitHub │ totp │ 6      │ 30     │ SHA1      │",
        "└──────┴────────┴──────┴────────┴────────┴───────────┘",
    ]
    listed = cli("totp", "list", "--json")
    assert [row["name"] for row in json.loads(listed.stdout)] == ["bank", "gh"]
    for output in (table.stdout, listed.stdout, (index_bytes() or b"").decode()):
        assert SECRET not in output
        assert SECRET.lower() not in output


def test_list_when_empty(cli: Cli) -> None:
    result = cli("totp", "list")
    assert (result.exit_code, result.stdout) == (0, "")
    assert "no TOTP entries yet" in result.stderr
    assert json.loads(cli("totp", "list", "--json").stdout) == []


def test_rename_moves_the_keyring_entry(cli: Cli) -> None:
    assert cli("totp", "add", "old", "--uri", URI).exit_code == 0
    result = cli("totp", "rename", "old", "new")
    assert (result.exit_code, result.stderr) == (0, "renamed old to new\n")
    assert index_names() == ["new"]
    assert secrets.get_secret(vault.account("new")) == SECRET
    assert secrets.get_secret(vault.account("old")) is None


def test_remove_asks_and_yes_removes(cli: Cli, stdin: Feed) -> None:
    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    stdin("")
    refused = cli("totp", "remove", "gh")
    assert refused.exit_code == ExitCode.CANCELED
    assert "pass --yes" in refused.stderr
    assert index_names() == ["gh"]
    result = cli("totp", "remove", "gh", "--yes")
    assert (result.exit_code, result.stderr) == (0, "removed gh\n")
    assert index_names() == []
    assert secrets.get_secret(vault.account("gh")) is None


def test_remove_confirmed_on_a_terminal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import typer

    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(typer, "confirm", lambda *a, **k: False)
    assert cli("totp", "remove", "gh").exit_code == ExitCode.CANCELED
    assert index_names() == ["gh"]
    monkeypatch.setattr(typer, "confirm", lambda *a, **k: True)
    assert cli("totp", "remove", "gh").exit_code == 0
    assert index_names() == []


def test_show_uri_round_trips(cli: Cli) -> None:
    assert cli("totp", "add", "gh", "--uri", URI + "&digits=8&algorithm=SHA256&period=45").exit_code == 0
    shown = cli("totp", "show", "gh", "--uri")
    assert shown.stdout == (
        f"otpauth://totp/GitHub:alice?secret={SECRET}&issuer=GitHub&algorithm=SHA256&digits=8&period=45\n"
    )


def _decode_terminal_qr(lines: list[str], invert: bool) -> str:
    """Turn half-block text back into pixels (a lit character cell = white unless inverted) and scan it."""
    scale = 6
    rows: list[list[bool]] = []  # True = lit
    for line in lines:
        top = [ch in "█▀" for ch in line]
        bottom = [ch in "█▄" for ch in line]
        rows += [top, bottom]
    width, height = len(rows[0]), len(rows)
    margin = 4
    image = Image.new("L", ((width + 2 * margin) * scale, (height + 2 * margin) * scale), 255)
    for y, row in enumerate(rows):
        for x, lit in enumerate(row):
            dark = lit if invert else not lit
            if dark:
                image.paste(
                    0,
                    (
                        (x + margin) * scale,
                        (y + margin) * scale,
                        (x + margin + 1) * scale,
                        (y + margin + 1) * scale,
                    ),
                )
    [barcode] = zxingcpp.read_barcodes(image, try_invert=False)
    return barcode.text


@pytest.mark.parametrize("invert", [False, True])
def test_terminal_qr_scans_back_to_the_uri(cli: Cli, invert: bool) -> None:
    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    uri = cli("totp", "show", "gh", "--uri").stdout.strip()
    args = ["totp", "show", "gh", "--qr"] + (["--invert"] if invert else [])
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\xa0" not in result.stdout
    assert set(result.stdout) <= set("█▀▄ \n")
    assert len({len(line) for line in lines}) == 1
    edge = lines[0][:QUIET_ZONE]
    assert edge == ("  " if invert else "██")  # the quiet zone is light: lit on dark themes
    assert _decode_terminal_qr(lines, invert) == uri


def test_terminal_qr_refuses_a_narrow_terminal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    monkeypatch.setenv("COLUMNS", "30")
    result = cli("totp", "show", "gh", "--qr")
    assert result.exit_code == ExitCode.INVALID_INPUT
    needed = len(matrix(cli("totp", "show", "gh", "--uri").stdout.strip())[0])
    assert (
        result.stderr.splitlines()[0]
        == f"error: the terminal is 30 columns wide; this QR code needs {needed}"
    )
    assert "--png FILE" in result.stderr
    assert result.stdout == ""


def test_png_is_private_and_not_overwritten(cli: Cli, tmp_path: Path) -> None:
    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    png = tmp_path / "gh.png"
    result = cli("totp", "show", "gh", "--png", str(png))
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    [barcode] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.read_bytes())))
    assert barcode.text == cli("totp", "show", "gh", "--uri").stdout.strip()
    before = png.read_bytes()
    again = cli("totp", "show", "gh", "--png", str(png))
    assert again.exit_code == ExitCode.ALREADY_EXISTS
    assert "--force" in again.stderr
    assert png.read_bytes() == before
    assert cli("totp", "show", "gh", "--png", str(png), "--force").exit_code == 0


def test_watch_refreshes_until_ctrl_c(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("totp", "add", "gh", "--uri", URI).exit_code == 0
    clock = [1_700_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])

    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        clock[0] += 31 if len(naps) == 2 else 10
        if len(naps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", nap)
    result = cli("totp", "code", "gh", "--watch")
    assert result.exit_code == 0, result.stderr
    assert len(naps) == 3
    # Not a terminal: Rich prints only the last state (clock at +41 s: 1 s into a period, 29 s left).
    assert result.stdout.startswith(f"gh  {oathtool(SECRET_BYTES, at=1_700_000_041)} ")
    assert result.stdout.rstrip().endswith(" 29 s")


def test_watch_refuses_hotp(cli: Cli, stdin: Feed) -> None:
    stdin(SECRET + "\n")
    assert cli("totp", "add", "hw", "--secret", "--hotp").exit_code == 0
    result = cli("totp", "code", "hw", "--watch")
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert json.loads(index_bytes() or b"")["entries"][0]["counter"] == 0
