"""`keyctl admin` against a real reference server on loopback: every command, the token's three sources,
80-column tables with short ids (full with --json), confirmations, refusals that change nothing, and the
named admin's step-up the server asks for before reset-2fa and deletions (#19 item 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyctl.hid.inprocess import connect
from keyctl.server import ServerHandle, start
from keyctl.webauthn import flows, profile, signin
from keyctl.webauthn.session import Session
from tests.conftest import Result
from tests.terminal import TerminalSession
from tests.webauthn.conftest import PASSWORD, authenticator, client, oathtool_code, sign_up, udp_authenticator

Cli = Callable[..., Result]
TOKEN = "admin-token-for-tests-0123456789"
ROOT = "root@example.com"  # the server's named admin (--admin-email)
AS_ROOT = ("--as", ROOT, "--totp-secret-env", "ROOT_TOTP")
__all__ = ["udp_authenticator"]  # a fixture


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerHandle]:
    with start(
        tmp_path / "rp.sqlite3",
        admin_token=TOKEN,
        max_failures=3,
        rate_limit=100_000,
        admin_emails=(ROOT,),
    ) as handle:
        monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
        monkeypatch.setenv("KEYCTL_ADMIN_SERVER", handle.url)
        yield handle


def with_passkeys(server: ServerHandle, email: str, count: int) -> Session:
    server.create_user(email, PASSWORD)
    session = Session(server.url, profile.load("keyctl"), server.url)
    sign_up(session, email, time.time)
    for number in range(count):
        key = authenticator()
        request = flows.Request(user=email, name=f"key {number}", resident=True)
        flows.register(session, client(server.url, lambda key=key: connect(key)), request)
    return session


def root_admin(server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> str:
    """The admin's account, enrolled with a code of the previous TOTP step (keyctl's own code for the
    step-up is then fresh); its TOTP secret in $ROOT_TOTP, and returned."""
    server.create_user(ROOT, PASSWORD)
    secrets: list[str] = []

    def enroll(uri: str) -> signin.CodeSource:
        secrets.append(parse_qs(urlsplit(uri).query)["secret"][0])
        return lambda: oathtool_code(secrets[0], time.time() - 30)

    with Session(server.url, profile.load("keyctl"), server.url) as session:
        signin.password_sign_in(session, signin.Password(ROOT, PASSWORD, enroll=enroll), lambda step: None)
    monkeypatch.setenv("ROOT_TOTP", secrets[0])
    return secrets[0]


def admin(cli: Cli, *args: str) -> Result:
    return cli("admin", *args, "--token-env", "ADMIN_TOKEN")


def test_users_add_list_show(cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEW_PW", PASSWORD)
    added = admin(cli, "users", "add", "Ann@Example.com", "--password-env", "NEW_PW", "--json")
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["email"] == "ann@example.com"
    again = admin(cli, "users", "add", "ann@example.com", "--password-env", "NEW_PW")
    assert again.exit_code == 5, again.stderr
    with_passkeys(server, "a-rather-long-address.for-the-table@example.com", 2).close()
    listed = admin(cli, "users", "list", "--json")
    assert [u["email"] for u in json.loads(listed.stdout)] == [
        "ann@example.com",
        "a-rather-long-address.for-the-table@example.com",
    ]
    monkeypatch.setenv("COLUMNS", "80")
    table = admin(cli, "users", "list")
    assert table.exit_code == 0, table.stderr
    assert "ann@example.com" in table.stdout  # a longer address folds inside its cell
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    shown = admin(cli, "users", "show", "a-rather-long-address.for-the-table@example.com")
    assert "TOTP enrolled" in shown.stdout
    assert "key 1" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    missing = admin(cli, "users", "show", "nobody@example.com")
    assert missing.exit_code == 4
    assert "fix: list the accounts with: keyctl admin users list" in missing.stderr


def test_passkeys_list_short_ids_and_delete_after_confirmation(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_admin(server, monkeypatch)
    session = with_passkeys(server, "bea@example.com", 2)
    full = json.loads(admin(cli, "passkeys", "list", "bea@example.com", "--json").stdout)
    ids = [p["id"] for p in full]
    assert len(ids) == 2
    assert all(len(i) > 40 for i in ids)
    table = admin(cli, "passkeys", "list", "bea@example.com")
    assert ids[0][:11] + "…" in table.stdout
    assert ids[0] not in table.stdout
    # No terminal to ask on and no --yes: refused, nothing deleted.
    refused = admin(cli, "passkeys", "delete", "bea@example.com", ids[0][:11] + "…")
    assert refused.exit_code == 8, refused.stderr
    assert "pass --yes" in refused.stderr
    assert len(session.call("GET", "/api/passkeys")["passkeys"]) == 2
    unknown = admin(cli, "passkeys", "delete", "bea@example.com", "zzzz", "--yes")
    assert unknown.exit_code == 4
    deleted = admin(cli, "passkeys", "delete", "bea@example.com", ids[0][:11], "--yes", *AS_ROOT)
    assert deleted.exit_code == 0, deleted.stderr
    assert [p["id"] for p in session.call("GET", "/api/passkeys")["passkeys"]] == ids[1:]
    session.close()


def test_blocks_list_and_lift(cli: Cli, server: ServerHandle) -> None:
    server.create_user("cid@example.com", PASSWORD)
    for _ in range(3):
        httpx.post(
            f"{server.url}/api/signin/password",
            json={"email": "cid@example.com", "password": "wrong password"},
            headers={"Origin": server.url},
        )
    blocks = json.loads(admin(cli, "blocks", "list", "--json").stdout)
    assert [(b["ip"], b["email"]) for b in blocks] == [("127.0.0.1", "cid@example.com")]
    assert "cid@example.com" in admin(cli, "blocks", "list").stdout
    lifted = admin(cli, "blocks", "lift", "127.0.0.1", "--email", "cid@example.com")
    assert lifted.exit_code == 0, lifted.stderr
    assert json.loads(admin(cli, "blocks", "list", "--json").stdout) == []
    nothing = admin(cli, "blocks", "lift", "127.0.0.1")
    assert nothing.exit_code == 4
    answer = httpx.post(
        f"{server.url}/api/signin/password",
        json={"email": "cid@example.com", "password": PASSWORD},
        headers={"Origin": server.url},
    )
    assert answer.status_code == 200, answer.text


def test_a_whole_ip_block_is_listed_and_lifted(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server blocks an IP after failed sign-ins on several accounts (hardening's IP blocks)."""
    with start(tmp_path / "ip.sqlite3", admin_token=TOKEN, max_failures=100, ip_max_failures=2) as server:
        monkeypatch.setenv("KEYCTL_ADMIN_SERVER", server.url)
        monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
        server.create_user("kai@example.com", PASSWORD)

        def password(email: str, secret: str) -> httpx.Response:
            body = {"email": email, "password": secret}
            return httpx.post(f"{server.url}/api/signin/password", json=body, headers={"Origin": server.url})

        for email in ("kai@example.com", "nobody@example.com"):
            password(email, "wrong password")
        assert password("kai@example.com", PASSWORD).status_code == 429
        listed = admin(cli, "blocks", "list", "--json")
        assert listed.exit_code == 0, listed.stderr
        blocks = json.loads(listed.stdout)
        assert [(b["kind"], b["ip"], b["email"]) for b in blocks] == [("ip", "127.0.0.1", None)]
        assert blocks[0]["until"] > blocks[0]["since"]
        assert "(the whole IP)" in admin(cli, "blocks", "list").stdout
        lifted = admin(cli, "blocks", "lift", "127.0.0.1")
        assert lifted.exit_code == 0, lifted.stderr
        assert "and the block of the whole IP" in lifted.stderr
        assert json.loads(admin(cli, "blocks", "list", "--json").stdout) == []
        assert password("kai@example.com", PASSWORD).status_code == 200


def test_reset_2fa_invites_and_the_audit_log(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_admin(server, monkeypatch)
    with_passkeys(server, "dov@example.com", 0).close()
    reset = admin(cli, "users", "reset-2fa", "dov@example.com", "--yes", *AS_ROOT)
    assert reset.exit_code == 0, reset.stderr
    assert (
        json.loads(admin(cli, "users", "show", "dov@example.com", "--json").stdout)["totp_enrolled"] is False
    )
    invite = admin(cli, "invites", "create", "eve@example.com")
    assert invite.exit_code == 0, invite.stderr
    assert httpx.get(invite.stdout.strip().replace(server.url, server.local_url)).status_code == 200
    events = json.loads(admin(cli, "audit", "--user", "dov@example.com", "--json").stdout)
    assert {"user_created", "totp_enrolled", "totp_reset"} <= {e["event"] for e in events}
    assert {e["email"] for e in events} == {"dov@example.com"}
    only = json.loads(admin(cli, "audit", "--event", "invite_created", "--json").stdout)
    assert [e["email"] for e in only] == ["eve@example.com"]
    assert json.loads(admin(cli, "audit", "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(admin(cli, "audit", "--since", "10m", "--json").stdout)) >= 4
    text = admin(cli, "audit", "--event", "totp_reset")
    assert "totp_reset  dov@example.com" in text.stdout
    assert f"by={ROOT}" in text.stdout
    bad = admin(cli, "audit", "--since", "yesterday")
    assert bad.exit_code == 3
    assert "--since 'yesterday'" in bad.stderr


def test_audit_follow_prints_new_events(server: ServerHandle) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    args = ["admin", "audit", "--follow", "--interval", "0.2", "--token-env", "ADMIN_TOKEN", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(2)
        server.create_user("fay@example.com", PASSWORD)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["email"] == "fay@example.com"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_the_token_from_a_stored_profile_and_refusals(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEYCTL_ADMIN_SERVER")
    nowhere = cli("admin", "users", "list")
    assert nowhere.exit_code == 3
    assert "keyctl admin login --server URL" in nowhere.stderr
    monkeypatch.setenv("WRONG", "not-the-token")
    wrong = cli("admin", "login", "--server", server.url, "--token-env", "WRONG")
    assert wrong.exit_code == 21, wrong.stderr
    assert "refused the admin token" in wrong.stderr
    stored = cli("admin", "login", "--server", server.url, "--token-env", "ADMIN_TOKEN")
    assert stored.exit_code == 0, stored.stderr
    config = Path(os.environ["KEYCTL_CONFIG_DIR"])
    assert TOKEN not in "".join(p.read_text() for p in config.rglob("*") if p.is_file())
    listed = cli("admin", "users", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    # keyctl audit server takes its server and token the same way.
    audited = cli("audit", "server", "--json", "--fail-on", "critical")
    assert audited.exit_code == 0, audited.stderr
    assert json.loads(audited.stdout)["summary"]["server"] == server.url
    assert cli("admin", "logout").exit_code == 0
    assert cli("admin", "users", "list").exit_code == 3


def test_users_delete_asks_first_and_ends_the_account(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_admin(server, monkeypatch)
    session = with_passkeys(server, "gus@example.com", 1)
    server.create_user("hal@example.com", PASSWORD)
    refused = admin(cli, "users", "delete", "gus@example.com")
    assert refused.exit_code == 8, refused.stderr
    assert "pass --yes" in refused.stderr
    me = httpx.get(f"{server.url}/api/me", cookies=session.client.cookies)
    assert me.json()["email"] == "gus@example.com"  # nothing changed
    unknown = admin(cli, "users", "delete", "nobody@example.com", "--yes")
    assert unknown.exit_code == 4
    assert "keyctl admin users list" in unknown.stderr
    deleted = admin(cli, "users", "delete", "Gus@Example.com", "--yes", *AS_ROOT)
    assert deleted.exit_code == 0, deleted.stderr
    assert "deleted the account gus@example.com and its 1 passkey(s)" in deleted.stderr
    listed = json.loads(admin(cli, "users", "list", "--json").stdout)
    assert [u["email"] for u in listed] == [ROOT, "hal@example.com"]
    gone = httpx.get(f"{server.url}/api/me", cookies=session.client.cookies)
    assert gone.status_code == 401
    session.close()


def test_users_delete_on_a_terminal_asks_and_no_keeps_the_account(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_admin(server, monkeypatch)
    server.create_user("ida@example.com", PASSWORD)
    args = ["admin", "users", "delete", "ida@example.com", "--token-env", "ADMIN_TOKEN", *AS_ROOT]
    answers = {"n": 8, "y": 0}
    for answer, code in answers.items():
        term = TerminalSession(args)
        term.expect("Delete the account ida@example.com and its 0 passkey(s)")
        term.type(answer + "\n")
        assert term.wait() == code, term.text
        emails = [u["email"] for u in httpx_admin(server).get("/api/admin/users").json()["users"]]
        assert emails == ([ROOT] if answer == "y" else [ROOT, "ida@example.com"])


def httpx_admin(server: ServerHandle) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"})


def test_invites_list_and_revoke(cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    links = []
    for email in ("jo@example.com", "jo@example.com", "a-long-address.for-the-invite-table@example.com"):
        created = admin(cli, "invites", "create", email)
        assert created.exit_code == 0, created.stderr
        links.append(created.stdout.strip())
    listed = admin(cli, "invites", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    # Oldest first; these were created within a second or so, so sort them by address here.
    invites = sorted(json.loads(listed.stdout), key=lambda i: i["email"] != "jo@example.com")
    assert [i["email"] for i in invites] == [
        "jo@example.com",
        "jo@example.com",
        "a-long-address.for-the-invite-table@example.com",
    ]
    assert not any(link.rsplit("/", 1)[1] in listed.stdout for link in links)
    monkeypatch.setenv("COLUMNS", "80")
    table = admin(cli, "invites", "list")
    assert invites[2]["id"][:11] + "…" in table.stdout
    assert invites[2]["id"] not in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    refused = admin(cli, "invites", "revoke", invites[2]["id"][:11] + "…")
    assert refused.exit_code == 8, refused.stderr
    assert len(json.loads(admin(cli, "invites", "list", "--json").stdout)) == 3
    by_id = admin(cli, "invites", "revoke", invites[2]["id"][:11] + "…", "--yes")
    assert by_id.exit_code == 0, by_id.stderr
    by_email = admin(cli, "invites", "revoke", "JO@example.com", "--yes")
    assert by_email.exit_code == 0, by_email.stderr
    assert "revoked 2 invite(s) for jo@example.com" in by_email.stderr
    assert json.loads(admin(cli, "invites", "list", "--json").stdout) == []
    assert "no pending invites" in admin(cli, "invites", "list").stderr
    for link in links:
        accepted = httpx.post(
            f"{server.url}/api/invites/accept",
            json={"token": link.rsplit("/", 1)[1], "password": PASSWORD},
            headers={"Origin": server.url},
        )
        assert accepted.status_code == 404, accepted.text
    none_left = admin(cli, "invites", "revoke", "jo@example.com", "--yes")
    assert none_left.exit_code == 4
    assert "keyctl admin invites list" in none_left.stderr


def test_passkeys_rename(cli: Cli, server: ServerHandle) -> None:
    session = with_passkeys(server, "kim@example.com", 2)
    ids = [p["id"] for p in json.loads(admin(cli, "passkeys", "list", "kim@example.com", "--json").stdout)]
    renamed = admin(cli, "passkeys", "rename", "kim@example.com", ids[1][:11] + "…", "Spare key", "--json")
    assert renamed.exit_code == 0, renamed.stderr
    assert json.loads(renamed.stdout)["name"] == "Spare key"
    assert [p["name"] for p in session.call("GET", "/api/passkeys")["passkeys"]] == ["key 0", "Spare key"]
    too_long = admin(cli, "passkeys", "rename", "kim@example.com", ids[0], "x" * 65)
    assert too_long.exit_code == 3, too_long.stderr
    assert "name must be 1 to 64" in too_long.stderr
    unknown = admin(cli, "passkeys", "rename", "kim@example.com", "zzzz", "Other")
    assert unknown.exit_code == 4
    assert "keyctl admin passkeys list kim@example.com" in unknown.stderr
    assert [p["name"] for p in session.call("GET", "/api/passkeys")["passkeys"]] == ["key 0", "Spare key"]
    text = admin(cli, "passkeys", "rename", "kim@example.com", ids[0], "Desk key")
    assert "is now named 'Desk key'" in text.stderr
    session.close()


def test_an_endpoint_the_server_lacks_is_exit_20(cli: Cli, server: ServerHandle) -> None:
    """As against an older server without the invites endpoints: its own 404 for an unknown route."""
    lacking = cli("admin", "invites", "list", "--server", f"{server.url}/old", "--token-env", "ADMIN_TOKEN")
    assert lacking.exit_code == 20, lacking.stderr
    assert f"GET {server.url}/old/api/admin/invites answered HTTP 404" in lacking.stderr
    assert "this server has no such admin endpoint" in lacking.stderr


def events(server: ServerHandle, name: str) -> list[dict[str, object]]:
    answer = httpx_admin(server).get("/api/admin/audit", params={"limit": 1000}).json()["events"]
    return [e for e in answer if e["event"] == name]


def test_without_a_step_up_the_sensitive_commands_say_what_is_needed(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_admin(server, monkeypatch)
    session = with_passkeys(server, "kim@example.com", 1)
    [passkey] = session.call("GET", "/api/passkeys")["passkeys"]
    server.create_user("lou@example.com", PASSWORD)
    with Session(server.url, profile.load("keyctl"), server.url) as lou:
        sign_up(lou, "lou@example.com", time.time)
    before = httpx_admin(server).get("/api/admin/users").json()
    for command in (
        ("users", "reset-2fa", "kim@example.com"),
        ("users", "delete", "kim@example.com"),
        ("passkeys", "delete", "kim@example.com", passkey["id"]),
    ):
        refused = admin(cli, *command, "--yes")
        assert refused.exit_code == 21, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert lines[0] == (
            "error: Confirm it's you: this admin action needs a named admin's step-up (a TOTP code or a "
            "passkey of an --admin-email account) at most 5 minutes old"
        ), refused.stderr
        assert "--as ADMIN_EMAIL with --totp NAME, --totp-secret-env VAR or --device SPEC" in lines[1]
    # Bad step-up options: refused before any request (exit 3).
    monkeypatch.setenv("LOU_TOTP", "JBSWY3DPEHPK3PXP")
    for options, said in (
        (("--totp-secret-env", "ROOT_TOTP"), "--totp-secret-env confirms the admin named with --as"),
        (("--as", ROOT), "--as needs a way to confirm it's that admin"),
        (("--as", ROOT, "--totp", "root", "--device", "virtual:x"), "--totp and --device exclude each other"),
        (("--as", ROOT, "--totp-secret-env", "UNSET_VAR"), "environment variable UNSET_VAR is not set"),
        # Another account is no admin, whatever its code; the server says so.
        (("--as", "lou@example.com", "--totp-secret-env", "LOU_TOTP"), "lou@example.com is not an admin"),
    ):
        bad = admin(cli, "users", "delete", "kim@example.com", "--yes", *options)
        assert bad.exit_code == 3, (options, bad.stderr)
        assert said in bad.stderr, bad.stderr
    # A wrong code of the admin: refused (exit 21), and it counts as a failed attempt of that account.
    monkeypatch.setenv("WRONG_TOTP", "JBSWY3DPEHPK3PXP")
    wrong = admin(
        cli, "users", "delete", "kim@example.com", "--yes", "--as", ROOT, "--totp-secret-env", "WRONG_TOTP"
    )
    assert wrong.exit_code == 21, wrong.stderr
    assert "refused the step-up: Incorrect code" in wrong.stderr
    assert [e["email"] for e in events(server, "admin_step_up_failed")] == [ROOT]
    assert httpx_admin(server).get("/api/admin/users").json() == before  # nothing changed
    session.close()


def test_an_admin_steps_up_with_a_code_from_the_vault(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyctl.totp import model, vault

    secret = root_admin(server, monkeypatch)
    vault.add(model.parse_uri(f"otpauth://totp/keyctl:{ROOT}?secret={secret}&issuer=keyctl", "root"))
    with_passkeys(server, "max@example.com", 0).close()
    deleted = admin(cli, "users", "delete", "max@example.com", "--yes", "--as", ROOT, "--totp", "root")
    assert deleted.exit_code == 0, deleted.stderr
    assert [e["email"] for e in events(server, "admin_step_up")] == [ROOT]
    [event] = events(server, "user_deleted")
    assert event["detail"] == {"by": ROOT, "passkeys": 0}


def test_an_admin_steps_up_with_a_passkey(
    cli: Cli, server: ServerHandle, monkeypatch: pytest.MonkeyPatch, udp_authenticator: Callable[..., str]
) -> None:
    root_admin(server, monkeypatch)
    roots_key = authenticator()
    with Session(server.url, profile.load("keyctl"), server.url) as root:
        secret = os.environ["ROOT_TOTP"]
        code = oathtool_code(secret, time.time() + 30)  # the next step: the enrollment used the previous
        signin.password_sign_in(root, signin.Password(ROOT, PASSWORD, totp=lambda: code), lambda step: None)
        flows.register(root, client(server.url, lambda: connect(roots_key)), flows.Request(user=ROOT))
    session = with_passkeys(server, "ned@example.com", 2)
    users_passkey = session.call("GET", "/api/passkeys")["passkeys"][0]
    # The user's own authenticator holds no passkey of the admin: refused, nothing deleted.
    users_key = udp_authenticator(authenticator())
    foreign = admin(
        cli,
        "passkeys",
        "delete",
        "ned@example.com",
        users_passkey["id"],
        "--yes",
        "--as",
        ROOT,
        "--device",
        users_key,
    )
    assert foreign.exit_code == 10, foreign.stderr
    assert len(session.call("GET", "/api/passkeys")["passkeys"]) == 2
    device = udp_authenticator(roots_key)
    deleted = admin(
        cli,
        "passkeys",
        "delete",
        "ned@example.com",
        users_passkey["id"],
        "--yes",
        "--as",
        ROOT,
        "--device",
        device,
    )
    assert deleted.exit_code == 0, deleted.stderr
    assert [p["id"] for p in session.call("GET", "/api/passkeys")["passkeys"]] != [users_passkey["id"]]
    assert len(session.call("GET", "/api/passkeys")["passkeys"]) == 1
    assert [e["detail"] for e in events(server, "admin_step_up")] == [{"method": "passkey"}]
    [event] = events(server, "passkey_deleted")
    assert event["detail"] == {"by": ROOT, "credential_id": users_passkey["id"]}
    session.close()
