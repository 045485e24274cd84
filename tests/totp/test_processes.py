"""keyctl as separate processes: the fast path against the Typer path, a missing D-Bus session, a hanging
keyring backend, and 8 concurrent `totp add`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keyctl.errors import ExitCode
from keyctl.totp.model import decode_base32, encode_base32
from tests.conftest import Result, run_keyctl

from .conftest import REPO, index_bytes, index_names, oathtool

Cli = Callable[..., Result]
SECRET = "KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF"


FROZEN_AT = 1_700_000_007
_FREEZE = f"import sys, time; time.time = lambda: {FROZEN_AT}.0\n"


def _python(code: str, args: list[str], env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def fast_path(args: list[str], env: dict[str, str] | None = None) -> Result:
    """keyctl's real entry point (which takes the fast path where it can), with the clock frozen."""
    return _python(_FREEZE + "from keyctl.__main__ import main; main()", args, env)


def typer_path(args: list[str], env: dict[str, str] | None = None) -> Result:
    """The same command line through the normal (Typer) path, with the clock frozen."""
    return _python(_FREEZE + "from keyctl.cli.app import run; sys.exit(run(sys.argv[1:]))", args, env)


@pytest.fixture
def entry(cli: Cli) -> str:
    result = run_keyctl(["totp", "add", "svc", "--secret", "--issuer", "Svc"], stdin=SECRET + "\n")
    assert result.exit_code == 0, result.stderr
    return "svc"


def test_the_fast_path_does_not_import_typer(entry: str) -> None:
    code = (
        "import sys; from keyctl.cli.fast import run_fast\n"
        "status = run_fast(['totp', 'code', 'svc'])\n"
        "print(status, 'typer' in sys.modules, 'rich' in sys.modules, 'keyring' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[-1] == "0 False False False"


@pytest.mark.parametrize("json_mode", [False, True])
def test_the_installed_keyctl_command_answers_totp_code_without_typer(entry: str, json_mode: bool) -> None:
    """The console script a user runs (the real entry point), with Python's import log on."""
    script = Path(sys.executable).with_name("keyctl")
    before = int(time.time())
    proc = subprocess.run(
        [str(script), "totp", "code", "svc", *(["--json"] if json_mode else [])],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    after = int(time.time())
    assert proc.returncode == 0, proc.stderr[-500:]
    imported = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert "keyctl.cli.fast" in imported  # the log is on and shows keyctl's own modules
    assert not {"typer", "click", "rich", "keyctl.cli.app"} & imported
    code = json.loads(proc.stdout)["code"] if json_mode else proc.stdout.rstrip("\n")
    assert code in {oathtool(decode_base32(SECRET), at=at) for at in (before, after)}


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["totp", "code", "svc"],
        ["totp", "code", "svc", "--json"],
        ["totp", "code", "--json", "svc"],
        ["totp", "code", "nope"],
        ["totp", "code", "nope", "--json"],
    ],
)
def test_fast_and_typer_paths_agree(entry: str, args: list[str]) -> None:
    fast, slow = fast_path(args), typer_path(args)
    assert fast == slow
    if "nope" in args:
        assert fast.exit_code == ExitCode.NOT_FOUND
        assert (
            fast.stderr == "error: no TOTP entry named 'nope'\n  fix: list the names with: keyctl totp list\n"
        )
    elif "code" in args:
        expected = oathtool(decode_base32(SECRET), at=FROZEN_AT)
        if "--json" in args:
            assert json.loads(fast.stdout) == {
                "name": "svc",
                "code": expected,
                "type": "totp",
                "remaining": 30 - FROZEN_AT % 30,
                "period": 30,
                "counter": None,
            }
        else:
            assert fast.stdout == expected + "\n"
    else:
        assert fast.stdout.startswith("keyctl ")


NO_BUS = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/keyctl-no-bus"}


def test_no_dbus_session(entry: str) -> None:
    before = index_bytes()
    fast = fast_path(["totp", "code", "svc"], env=NO_BUS)
    assert fast == typer_path(["totp", "code", "svc"], env=NO_BUS)
    assert fast.exit_code == ExitCode.SECRET_STORE
    message, remedy = fast.stderr.splitlines()
    assert message.startswith(
        "error: the Secret Service (D-Bus, via secretstorage): cannot connect to the D-Bus"
    )
    assert "gnome-keyring-daemon --unlock" in remedy
    added = run_keyctl(["totp", "add", "new", "--secret"], stdin=SECRET + "\n", env=NO_BUS)
    assert added.exit_code == ExitCode.SECRET_STORE
    with_keyring = run_keyctl(["totp", "code", "svc"], env={**NO_BUS, "KEYCTL_KEYRING_BACKEND": "keyring"})
    assert with_keyring.exit_code == ExitCode.SECRET_STORE
    assert "python-keyring" in with_keyring.stderr
    assert "no usable keyring backend" in with_keyring.stderr
    assert index_bytes() == before
    for result in (fast, added, with_keyring):
        assert SECRET not in result.stdout + result.stderr


def test_a_hanging_keyring_times_out(entry: str) -> None:
    hang = {
        "PYTHON_KEYRING_BACKEND": "tests.totp.hanging_keyring.HangingKeyring",
        "KEYCTL_KEYRING_TIMEOUT": "0.5",
        "PYTHONPATH": str(REPO),
    }
    before = index_bytes()
    started = time.monotonic()
    code = run_keyctl(["totp", "code", "svc"], env=hang)
    added = run_keyctl(["totp", "add", "new", "--secret"], stdin=SECRET + "\n", env=hang)
    assert time.monotonic() - started < 20
    for result in (code, added):
        assert result.exit_code == ExitCode.SECRET_STORE
        backend = "python-keyring (backend tests.totp.hanging_keyring.HangingKeyring)"
        assert result.stderr.startswith(f"error: {backend} did not answer within 0.5 s")
        assert "KEYCTL_KEYRING_TIMEOUT" in result.stderr
    assert index_bytes() == before
    assert index_names() == ["svc"]


def test_eight_concurrent_adds_lose_nothing() -> None:
    secrets = {f"parallel-{i}": encode_base32(os.urandom(10 + i)) for i in range(8)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "keyctl", "totp", "add", name, "--secret"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in secrets
    }
    for name, proc in procs.items():
        _out, err = proc.communicate(secrets[name] + "\n", timeout=120)
        assert proc.returncode == 0, err
    document = json.loads(index_bytes() or b"")  # still valid JSON
    assert sorted(entry["name"] for entry in document["entries"]) == sorted(secrets)
    now = int(time.time())
    for name, secret in secrets.items():
        code = run_keyctl(["totp", "code", name]).stdout.strip()
        assert code in {oathtool(decode_base32(secret), at=now + d) for d in (0, 5, 10, 15)}


def test_concurrent_hotp_codes_never_repeat() -> None:
    """Six processes ask for the next HOTP code at once: each counter value is used exactly once."""
    added = run_keyctl(["totp", "add", "hw", "--secret", "--hotp"], stdin=SECRET + "\n")
    assert added.exit_code == 0, added.stderr
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "keyctl", "totp", "code", "hw", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert sorted(result["counter"] for result in results) == list(range(6))
    for result in results:
        assert result["code"] == oathtool(decode_base32(SECRET), counter=result["counter"])
    assert json.loads(index_bytes() or b"")["entries"][0]["counter"] == 6
