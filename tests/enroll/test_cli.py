"""keyctl enroll's command line: input checks, output with NO_COLOR at a fixed width, JSON, and no
secret in argv."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2

from keyctl.enroll import pins
from keyctl.enroll.batch import FoundKey, UsbKeys
from keyctl.errors import ExitCode, InvalidInput, PasskeyTimeout
from keyctl.hid import open_device
from tests.conftest import run_keyctl
from tests.enroll.conftest import PASSWORD, PIN, Rig
from tests.enroll.test_batch import _pin_set
from tests.terminal import TerminalSession

ANN, BEN = "ann@example.com", "ben@example.com"


def test_output_with_no_color_at_a_fixed_width(rig: Rig, enroll: Any) -> None:
    rig.server.create_user(ANN, PASSWORD)
    result = enroll("--user", ANN, "--device", rig.key(), "--pin-env", "TEST_PIN")
    assert result.exit_code == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\x1b[" not in stream  # NO_COLOR=1 (tests/conftest.py)
        assert max(len(line) for line in stream.splitlines()) <= 120  # COLUMNS=120
    lines = result.stderr.splitlines()
    assert re.fullmatch(r"─* ?user 1 of 1: ann@example\.com ─+", lines[0].strip()), lines[0]
    assert "  PIN set on the key" in lines
    assert "1 enrolled, 0 already registered, 0 failed, of 1 users" in lines
    [credential] = rig.passkeys()[ANN]
    assert "ann@example.com" in result.stdout
    assert "enrolled" in result.stdout
    assert credential[:20] in result.stdout  # the table folds long ids, never cuts them


def test_json_summary(rig: Rig, enroll: Any) -> None:
    rig.server.create_user(ANN, PASSWORD)
    rig.server.create_user(BEN, PASSWORD)
    spec = rig.key()
    result = enroll("--user", ANN, "--user", BEN, "--device", spec, "--pin-env", "TEST_PIN", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert (summary["enrolled"], summary["already_registered"], summary["failed"]) == (2, 0, 0)
    assert [u["user"] for u in summary["users"]] == [ANN, BEN]
    assert [u["credential_id"] for u in summary["users"]] == [rig.passkeys()[ANN][0], rig.passkeys()[BEN][0]]
    assert PIN not in result.stdout + result.stderr


def test_no_secret_option_takes_a_value_on_the_command_line() -> None:
    from typer.main import get_command

    from keyctl.cli.app import build_app

    command = get_command(build_app()).commands["enroll"]  # type: ignore[attr-defined]
    names = [name for param in command.params for name in param.opts]
    secretish = [n for n in names if re.search(r"pin|token|password|secret", n)]
    assert secretish == ["--pin-policy", "--pin-env", "--token-env", "--admin-token-env"]


def test_a_separate_process_gets_its_secrets_from_the_environment(rig: Rig, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    log = tmp_path / "log.jsonl"
    argv = ["enroll", "--server", rig.server.url, "--user", ANN, "--device", rig.key()]
    argv += ["--pin-env", "TEST_PIN", "--admin-token-env", "TEST_ADMIN_TOKEN", "--log", str(log)]
    secrets = (PIN, rig.server.admin_token)
    assert not [a for a in argv if any(s in a for s in secrets)]
    result = run_keyctl(argv, stdin="")
    assert result.exit_code == 0, result.stderr
    for text in (result.stdout, result.stderr, log.read_text()):
        assert not [s for s in secrets if s in text]


def test_a_pin_refused_by_the_policy_file(rig: Rig, enroll: Any, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    policy = tmp_path / "pins.toml"
    policy.write_text('[pin]\nsource = "prompt"\nmin_length = 8\n')
    spec = rig.key()
    result = enroll("--user", ANN, "--device", spec, "--pin-env", "TEST_PIN", "--pin-policy", str(policy))
    assert result.exit_code == ExitCode.PIN_POLICY
    assert "the PIN policy needs at least 8 characters" in result.stderr
    assert not _pin_set(spec)
    assert rig.passkeys() == {ANN: []}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[pin]\nsource = "argv"\n', "pin.source must be"),
        ("[pin]\nmin_length = 2\n", "pin.min_length must be a whole number from 4 to 63"),
        ("[pin]\nmin_length = true\n", "pin.min_length must be"),
        ("[pin]\nmax = 9\n", "unknown key pin.max"),
        ("[other]\n", "expected only a [pin] table"),
        ("[pin\n", "not valid TOML"),
    ],
)
def test_bad_pin_policies(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "pins.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=re.escape(problem)):
        pins.load(path)


def test_a_good_pin_policy(tmp_path: Path) -> None:
    path = tmp_path / "pins.toml"
    path.write_text('[pin]\nsource = "generate"\ngenerated_length = 10\n')
    assert pins.load(path) == pins.Policy(source="generate", min_length=6, generated_length=10)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--user", ANN, "--user", "ANN@example.com"], "is listed twice"),
        (["--user", "not-an-email"], "is not an email address"),
        (["--user", ANN, "--users-file", "x"], "exclude each other"),
        (
            [
                "--user",
                ANN,
                "--user",
                BEN,
                "--device",
                "udp:127.0.0.1:1",
                "--device",
                "udp:127.0.0.1:2",
                "--device",
                "udp:127.0.0.1:3",
            ],
            "3 --device values for 2 users",
        ),
        (["--user", ANN, "--device", "usb", "--device", "udp:127.0.0.1:2"], "cannot be mixed"),
        (["--user", ANN, "--device", "bluetooth:x"], "unknown device"),
        ([], "no users to enroll"),
    ],
)
def test_bad_input_changes_nothing(rig: Rig, enroll: Any, args: list[str], problem: str) -> None:
    result = enroll(*args)
    assert result.exit_code == ExitCode.INVALID_INPUT, result.stderr
    assert problem in result.stderr
    assert not [e for e in rig.audit() if e["event"] == "enrollment_session_created"]


def test_users_file(rig: Rig, enroll: Any, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    rig.server.create_user(BEN, PASSWORD)
    users = tmp_path / "users.txt"
    users.write_text(f"# batch 7\n{ANN}\n\n  {BEN.upper()}  \n")
    result = enroll(
        "--users-file", str(users), "--device", rig.key(), "--device", rig.key(), "--pin-env", "TEST_PIN"
    )
    assert result.exit_code == 0, result.stderr
    assert {u: len(ids) for u, ids in rig.passkeys().items()} == {ANN: 1, BEN: 1}


class FakeUsb:
    """fido2's USB device list over time: each poll returns the next snapshot (the last one repeats)."""

    def __init__(self, *snapshots: list[tuple[str, str | None]]) -> None:
        self.snapshots = list(snapshots)
        self.polls = 0

    def __call__(self) -> list[tuple[str, str | None]]:
        self.polls += 1
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]


def test_usb_waits_for_a_key_not_used_yet() -> None:
    now = [0.0]
    usb = FakeUsb(
        [],  # nothing plugged in yet
        [("/dev/hidraw1", "SN1")],
        [("/dev/hidraw1", "SN1")],  # the first key is still there: wait
        [("/dev/hidraw1", "SN2")],  # swapped: same path, new serial
        [],
        [("/dev/hidraw1", None)],  # a key without serial on a path freed meanwhile
        [("/dev/hidraw1", "SN1")],  # the first key again: never used twice
    )

    def sleep(seconds: float) -> None:
        now[0] += seconds

    keys = UsbKeys(timeout_s=10, present=usb, sleep=sleep, clock=lambda: now[0])
    assert keys.next_key(0) == FoundKey("usb:/dev/hidraw1", "SN1")
    assert keys.next_key(1) == FoundKey("usb:/dev/hidraw1", "SN2")
    assert keys.next_key(2) == FoundKey("usb:/dev/hidraw1", None)
    with pytest.raises(PasskeyTimeout, match="no new security key was inserted within 10 s"):
        keys.next_key(3)
    assert now[0] >= 10


def _enroll_on_a_terminal(rig: Rig, *args: str) -> TerminalSession:
    """keyctl enroll as its own process on a pseudo-terminal: PINs come from getpass, as a technician's do."""
    return TerminalSession(
        ["enroll", "--server", rig.server.url, "--admin-token-env", "TEST_ADMIN_TOKEN", *args],
        env={"COLUMNS": "120"},
    )


def _pin_is(spec: str, pin: str) -> bool:
    device = open_device(spec)
    try:
        ClientPin(Ctap2(device)).get_pin_token(pin, ClientPin.PERMISSION.MAKE_CREDENTIAL, "localhost")
        return True
    except CtapError:
        return False
    finally:
        device.close()


def test_a_new_pin_is_asked_twice_without_echo(rig: Rig, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    key = rig.key()
    terminal = _enroll_on_a_terminal(rig, "--user", ANN, "--device", key)
    terminal.expect(f"New PIN for {ANN}'s key: ")
    terminal.type("730516\n")
    terminal.expect(f"Repeat the new PIN for {ANN}'s key: ")
    terminal.type("730516\n")
    assert terminal.wait() == 0, terminal.text
    assert "1 enrolled, 0 already registered, 0 failed, of 1 users" in terminal.text
    assert "730516" not in terminal.text  # getpass turned the echo off
    assert _pin_is(key, "730516")
    assert len(rig.passkeys()[ANN]) == 1


def test_a_mismatched_repetition_is_refused_and_changes_nothing(rig: Rig, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    key = rig.key()
    log = tmp_path / "log.jsonl"
    terminal = _enroll_on_a_terminal(rig, "--user", ANN, "--device", key, "--log", str(log))
    terminal.expect(f"New PIN for {ANN}'s key: ")
    terminal.type("730516\n")
    terminal.expect("Repeat the new PIN")
    terminal.type("730517\n")
    assert terminal.wait() == ExitCode.INVALID_INPUT, terminal.text
    assert "the repeated new PIN for ann@example.com's key differs from the first" in terminal.text
    [line] = log.read_text().splitlines()
    assert json.loads(line)["result"] == "failed"
    assert not _pin_set(key)
    assert rig.passkeys() == {ANN: []}


def test_ctrl_c_at_the_pin_prompt_stops_the_batch(rig: Rig, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    rig.server.create_user(BEN, PASSWORD)
    first, second = rig.key(), rig.key()
    log = tmp_path / "log.jsonl"
    terminal = _enroll_on_a_terminal(
        rig, "--user", ANN, "--user", BEN, "--device", first, "--device", second, "--log", str(log)
    )
    terminal.expect(f"New PIN for {ANN}'s key: ")
    terminal.type("\x03")  # Ctrl-C: the terminal sends SIGINT to the process
    assert terminal.wait() == ExitCode.INTERRUPTED, terminal.text
    assert "batch stopped: 1 users not attempted" in terminal.text
    [line] = log.read_text().splitlines()
    assert (json.loads(line)["user"], json.loads(line)["detail"]) == (ANN, "interrupted with Ctrl-C")
    assert "user 2 of 2" not in terminal.text
    assert not _pin_set(first)
    assert rig.passkeys() == {ANN: [], BEN: []}


def test_insert_timeout_bounds_the_wait_for_a_usb_key(rig: Rig, enroll: Any) -> None:
    """No security key is plugged into this machine: the wait for one ends after --insert-timeout."""
    rig.server.create_user(ANN, PASSWORD)
    started = time.monotonic()
    result = enroll("--user", ANN, "--device", "usb", "--insert-timeout", "2", "--pin-env", "TEST_PIN")
    waited = time.monotonic() - started
    assert result.exit_code == ExitCode.TIMEOUT, result.stderr
    assert "no new security key was inserted within 2 s" in result.stderr
    assert 2 <= waited < 30  # the default is 300 s
    assert rig.passkeys() == {ANN: []}


def test_the_admin_token_comes_from_where_keyctl_admin_takes_it(
    rig: Rig, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--token-env VAR, else $KEYCTL_ADMIN_TOKEN, else the keyring entry 'keyctl admin login' stored."""
    for email in (ANN, BEN):
        rig.server.create_user(email, PASSWORD)
    spec = rig.key()
    base = ["enroll", "--server", rig.server.url, "--device", spec, "--pin-env", "TEST_PIN"]
    monkeypatch.setenv("KEYCTL_ADMIN_TOKEN", rig.server.admin_token)
    from_env = cli(*base, "--user", ANN)
    assert from_env.exit_code == 0, from_env.stderr
    monkeypatch.setenv("KEYCTL_ADMIN_TOKEN", "not-the-token")
    wrong = cli(*base, "--user", BEN)
    assert wrong.exit_code == ExitCode.SIGN_IN_FAILED, wrong.stderr
    monkeypatch.delenv("KEYCTL_ADMIN_TOKEN")
    stored = cli("admin", "login", "--server", rig.server.url, "--token-env", "TEST_ADMIN_TOKEN")
    assert stored.exit_code == 0, stored.stderr
    from_keyring = cli(*base, "--user", BEN)
    assert from_keyring.exit_code == 0, from_keyring.stderr
    assert set(rig.passkeys()) == {ANN, BEN}
    assert all(len(ids) == 1 for ids in rig.passkeys().values())
