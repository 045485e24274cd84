"""The commands as scripts use them: a full scripted sign-in, JSON results, cookie jars curl can reuse,
the session cookie on stdout, and `keyctl demo` as a separate process."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_keyctl
from tests.webauthn.conftest import PASSWORD, Reference, authenticator

Cli = Callable[..., Any]


def test_scripted_register_then_login_with_session_reuse(
    cli: Cli,
    reference: Reference,
    udp_authenticator: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference.account("dana@example.com").close()
    monkeypatch.setenv("PW", PASSWORD)
    monkeypatch.setenv("RC", reference.recovery["dana@example.com"])
    device = udp_authenticator(authenticator())
    registered = cli(
        "register", "--server", reference.url, "--user", "dana@example.com", "--name", "CI key", "--resident",
        "--password-env", "PW", "--recovery-code-env", "RC", "--authenticator", device, "--json",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.stderr
    answer = json.loads(registered.stdout)
    assert answer["ceremony"] == "register"
    assert answer["server"]["passkey"]["name"] == "CI key"
    # The recovery code was used, so the server issued a new one: the script gets it, once.
    assert answer["recovery_code"] not in ("", reference.recovery["dana@example.com"])
    assert PASSWORD not in registered.stdout + registered.stderr

    jar = tmp_path / "session.jar"
    printed = cli(
        "login",
        "--server",
        reference.url,
        "--authenticator",
        device,
        "--cookie-jar",
        str(jar),
        "--print-session",
    )
    assert printed.exit_code == 0, printed.stderr
    cookie = printed.stdout.strip()
    assert "\t".join(("keyctl_session", cookie)) in jar.read_text()
    me = subprocess.run(
        ["curl", "-sf", "-b", str(jar), f"{reference.url}/api/me"], check=True, capture_output=True, text=True
    )
    assert json.loads(me.stdout)["email"] == "dana@example.com"

    result = cli(
        "login", "--server", reference.url, "--user", "dana@example.com", "--authenticator", device, "--json"
    )
    assert result.exit_code == 0, result.stderr
    login = json.loads(result.stdout)
    assert login["verified"] is True
    assert (login["user"], login["method"], login["authenticator"]) == ("dana@example.com", "passkey", device)
    assert login["credential_id"] == answer["credential_id"]
    assert login["server"]["status"] == "signed_in"


def test_a_password_sign_in_with_the_recovery_code(
    cli: Cli, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference.account("erin@example.com").close()
    monkeypatch.setenv("PW", PASSWORD)
    monkeypatch.setenv("RC", reference.recovery["erin@example.com"])
    result = cli(
        "login", "--server", reference.url, "--user", "erin@example.com", "--password-env", "PW",
        "--recovery-code-env", "RC",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "signed in as erin@example.com with password and recovery" in result.stdout
    assert "the server suggests a passkey: keyctl register" in result.stderr
    assert "recovery code (shown once, keep it safe):" in result.stdout


def test_a_first_sign_in_without_a_way_to_enroll_totp_is_refused(
    cli: Cli, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference.server.create_user("fred@example.com", PASSWORD)
    monkeypatch.setenv("PW", PASSWORD)
    result = cli("login", "--server", reference.url, "--user", "fred@example.com", "--password-env", "PW")
    assert result.exit_code == 21
    assert "must set up TOTP 2FA first" in result.stderr


def test_demo_runs_the_whole_journey_as_a_process() -> None:
    result = run_keyctl(["demo"], timeout=120)
    assert result.exit_code == 0, result.stderr
    steps = (
        "1. started keyctl's reference server",
        "4. signed in with password + TOTP",
        "5. registered a passkey",
        "6. signed out",
        "7. signed in with the passkey as demo@example.com",
        "8. stopped the server",
    )
    for step in steps:
        assert step in result.stderr
    assert "a recovery code issued, not shown" in result.stderr
    assert not re.search(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", result.stderr + result.stdout)
    assert "demo complete" in result.stdout


def test_demo_json() -> None:
    result = run_keyctl(["demo", "--json"], timeout=120)
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["signed_in"] is True
    assert answer["user"] == "demo@example.com"
    assert answer["server"].startswith("http://localhost:")


def test_first_sign_in_enrolls_totp_into_the_vault_and_later_sign_ins_use_it(
    cli: Cli, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Server and vault read the same (patched) wall clock, 5 s into a TOTP step, so no step boundary
    # falls between the enrollment and the replay below.
    real = time.time
    start = (int(real()) // 30) * 30 + 5 - real()
    monkeypatch.setattr(time, "time", lambda: real() + start)
    reference.server.create_user("gina@example.com", PASSWORD)
    monkeypatch.setenv("PW", PASSWORD)
    base = ("login", "--server", reference.url, "--user", "gina@example.com", "--password-env", "PW")
    first = cli(*base, "--save-totp", "gina", "--json")
    assert first.exit_code == 0, first.stderr
    answer = json.loads(first.stdout)
    assert (answer["method"], answer["verified"]) == ("totp", True)
    assert answer["recovery_code"]
    listed = cli("totp", "list", "--json")
    assert "gina" in listed.stdout
    # The code just used for enrollment is not sent again (the server would refuse the replay and count
    # it toward its block): keyctl waits for the next step (here a sleep that moves the shared clock).
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        nonlocal start
        start += seconds

    monkeypatch.setattr(time, "time", lambda: real() + start)
    monkeypatch.setattr(time, "sleep", sleep)
    later = cli(*base, "--totp", "gina")
    assert later.exit_code == 0, later.stderr
    assert "signed in as gina@example.com with password and totp" in later.stdout
    assert 15 <= sum(slept) <= 25  # 5 s into the step (plus the time the commands took): up to 25 s
    assert "already used" not in later.stderr  # silent when stderr is not a terminal
    again = cli(*base, "--save-totp", "gina")
    assert again.exit_code == 5
    assert "TOTP entry 'gina' already exists" in again.stderr


def test_a_stored_virtual_authenticator_in_separate_processes(reference: Reference, tmp_path: Path) -> None:
    """What a CI job does: a stored virtual key (CI mode key in the environment), one process per step."""
    env = {"KEYCTL_VIRTUAL_KEY": run_keyctl(["virtual", "ci-key"]).stdout.strip()}
    created = run_keyctl(["virtual", "create", "ci"], env=env)
    assert created.exit_code == 0, created.stderr
    jar = tmp_path / "jar.txt"
    with reference.account("hana@example.com") as session:
        session.save_cookies(jar)
    registered = run_keyctl(
        ["register", "--server", reference.url, "--user", "hana@example.com", "--cookie-jar", str(jar),
         "--authenticator", "virtual:ci", "--resident"],
        env=env,
    )  # fmt: skip
    assert registered.exit_code == 0, registered.stderr
    logged_in = run_keyctl(
        ["login", "--server", reference.url, "--authenticator", "virtual:ci", "--json"], env=env
    )
    assert logged_in.exit_code == 0, logged_in.stderr
    answer = json.loads(logged_in.stdout)
    assert (answer["user"], answer["authenticator"], answer["server"]["method"]) == (
        "hana@example.com",
        "virtual:ci",
        "passkey",
    )


def test_the_pin_can_come_from_stdin(
    reference: Reference, udp_authenticator: Callable[..., str], tmp_path: Path
) -> None:
    from keyctl.authenticator import Policy, UvMode

    device = udp_authenticator(authenticator(Policy(uv=UvMode.NONE), pin_code="246810"))
    jar = tmp_path / "jar.txt"
    with reference.account("ivan@example.com") as session:
        session.save_cookies(jar)
    args = ["register", "--server", reference.url, "--user", "ivan@example.com", "--cookie-jar", str(jar),
            "--authenticator", device]  # fmt: skip
    wrong = run_keyctl(args, stdin="135790\n")
    assert wrong.exit_code == 15, wrong.stderr
    assert "wrong PIN (7 attempts left" in wrong.stderr
    right = run_keyctl(args, stdin="246810\n")
    assert right.exit_code == 0, right.stderr
    assert "246810" not in right.stdout + right.stderr


def test_password_options_need_a_profile_with_password_sign_in(
    cli: Cli, udp_authenticator: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.webauthn.servers import APPS, serve

    monkeypatch.setenv("PW", PASSWORD)
    with serve(APPS["simplewebauthn"]) as server:
        result = cli(
            "register", "--server", server.url, "--profile", "simplewebauthn", "--user", "user@localhost",
            "--password-env", "PW", "--authenticator", udp_authenticator(authenticator()),
        )  # fmt: skip
    assert result.exit_code == 3
    assert "server profile simplewebauthn has no password sign-in" in result.stderr
    assert server.state.verified == []


def test_register_refuses_a_reused_session_of_another_account(
    cli: Cli, reference: Reference, udp_authenticator: Callable[..., str], tmp_path: Path
) -> None:
    """--user carol with bob's cookie jar: refused before any ceremony, nothing registered for either."""
    jar = tmp_path / "bob.jar"
    with reference.account("bob@example.com") as bob:
        bob.save_cookies(jar)
    carol = reference.account("carol@example.com")
    result = cli(
        "register", "--server", reference.url, "--user", "carol@example.com", "--cookie-jar", str(jar),
        "--authenticator", udp_authenticator(authenticator()),
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    assert f"the session in {jar} is bob@example.com's, not carol@example.com's" in result.stderr
    assert "fix: give --user bob@example.com" in result.stderr
    with carol, reference.session() as again:
        again.load_cookies(jar)
        assert again.call("GET", "/api/passkeys")["passkeys"] == []
        assert carol.call("GET", "/api/passkeys")["passkeys"] == []
    same_case = cli(
        "register", "--server", reference.url, "--user", "Bob@Example.com", "--cookie-jar", str(jar),
        "--authenticator", udp_authenticator(authenticator()),
    )  # fmt: skip
    assert same_case.exit_code == 0, same_case.stderr
