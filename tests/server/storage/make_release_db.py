"""Writes the SQLite database fixture made by the server as released before schema versioning (keyctl's
server with ``store.py``'s unversioned schema): an account with TOTP and a passkey, an open session, an
invite, a failed attempt and audit events, plus the test-only secrets needed to sign in to it again.

Run once from a checkout of that release: ``python -m tests.server.storage.make_release_db``. The files it
writes are committed; the upgrade test (test_migrations.py) opens a copy with today's code.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from keyctl.server import start
from tests.server.conftest import (
    PASSWORD,
    FakeClock,
    client,
    enroll,
    register,
)
from tests.server.softauth import SoftAuthenticator, b64url

HERE = Path(__file__).parent
DATABASE = HERE / "release-unversioned.sqlite3"
SECRETS = HERE / "release-unversioned.json"


def main() -> None:
    clock = FakeClock()
    clock.now = 1_790_000_000.0  # fixed, so the file's timestamps are reproducible
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "rp.sqlite3"
        with start(path, clock=clock, rate_limit=100_000) as server:
            account = enroll(server, clock)
            authenticator = SoftAuthenticator(server.url)
            registered = register(account.http, authenticator, name="Desk key")
            assert registered.status_code == 200, registered.text
            with client(server) as other:
                body = {"email": account.email, "password": "x" + PASSWORD}
                wrong = other.post("/api/signin/password", json=body)
                assert wrong.status_code == 401, wrong.text
            server.policy.invite("bob@example.com")
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("VACUUM")
        shutil.copyfile(path, DATABASE)
    (credential,) = authenticator.credentials.values()
    key_pem = credential.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    SECRETS.write_text(
        json.dumps(
            {
                "comment": "test-only secrets of the fixture account (never a real one)",
                "email": account.email,
                "password": PASSWORD,
                "totp_secret": account.secret,
                "recovery_code": account.recovery_code,
                "credential_id": b64url(credential.id),
                "credential_key_pem": key_pem,
                "user_handle": b64url(credential.user_handle),
                "counter": credential.counter,
                "clock": clock.now,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
