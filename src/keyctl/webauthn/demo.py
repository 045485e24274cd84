"""`keyctl demo`: the whole sign-in journey against a throwaway reference server, in one process.

A reference server on a free loopback port with a database in a temporary directory, an in-memory
virtual authenticator, an account, password + TOTP enrollment (the TOTP secret stays in memory), a
passkey registered, a sign-out, and a passkey sign-in; everything is removed at the end.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keyctl.webauthn import flows, profile, signin
from keyctl.webauthn.session import Session

DEMO_USER = "demo@example.com"


@dataclass(frozen=True)
class DemoResult:
    server_url: str
    user: str
    credential_id: str
    signed_in: bool


class _Quiet:
    """The virtual authenticator approves by itself: nothing to ask the user."""

    def touch(self) -> None:
        return None

    def pin(self) -> str | None:
        return None


def run(say: Callable[[str], None]) -> DemoResult:
    from keyctl.authenticator import VirtualAuthenticator
    from keyctl.hid.inprocess import connect
    from keyctl.server import start

    with (
        tempfile.TemporaryDirectory(prefix="keyctl-demo-") as tmp,
        start(Path(tmp) / "demo.sqlite3") as server,
    ):
        say(f"1. started keyctl's reference server at {server.url} (throwaway database)")
        authenticator = VirtualAuthenticator()
        say("2. created a throwaway virtual authenticator (in memory)")
        password = secrets.token_urlsafe(18)
        server.create_user(DEMO_USER, password)
        say(f"3. created the account {DEMO_USER} with a random password")
        keyctl_profile = profile.load("keyctl")
        with Session(server.url, keyctl_profile, server.url) as session:
            first = signin.password_sign_in(
                session,
                signin.Password(DEMO_USER, password, enroll=signin.code_from_uri),
                lambda step: say(f"   {step}"),
            )
            issued = "a recovery code issued, not shown" if first.recovery_code else "no recovery code"
            say(f"4. signed in with password + TOTP (enrolled now; {issued}: the account is thrown away)")
            client = flows.Client(
                origin=server.url,
                authenticator="virtual (in memory)",
                open_device=lambda: connect(authenticator),
                interaction=_Quiet(),
            )
            registered = flows.register(
                session, client, flows.Request(user=DEMO_USER, name="keyctl demo", resident=True)
            )
            say(f"5. registered a passkey: credential {registered.credential_id}")
            signin.sign_out(session)
            say("6. signed out")
            login = flows.login(session, client, flows.Request())
            say(f"7. signed in with the passkey as {login.user} (username-less, no password, no TOTP)")
    say("8. stopped the server and removed its database")
    return DemoResult(server.url, DEMO_USER, registered.credential_id or "", login.verified)
