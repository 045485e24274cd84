"""The web layer's scheduling: quick endpoints run on the event loop, slow ones (password hashing, QR
codes) in worker threads, so a slow request never holds up the others."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from keyctl.server import ServerHandle, passwords
from tests.server.conftest import EMAIL, PASSWORD, client, create_user, http_client


def test_a_password_being_hashed_does_not_hold_up_a_passkey_login(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(server)
    entered, release = threading.Event(), threading.Event()
    real = passwords.verify_password

    def held(password: str, stored: str) -> bool:
        entered.set()
        release.wait(20)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", held)
    with ThreadPoolExecutor(1) as pool:
        try:
            pending = pool.submit(
                lambda: client(server).post(
                    "/api/signin/password", json={"email": EMAIL, "password": PASSWORD}
                )
            )
            assert entered.wait(10)
            # Were the password step on the event loop, this request would wait for it and time out.
            with http_client(server.url, timeout=5) as quick:
                options = quick.post("/api/passkeys/login/options", json={"email": EMAIL})
                assert options.status_code == 200, options.text
                assert quick.get("/api/me").status_code == 401  # a quick endpoint, no session
            assert not pending.done()
        finally:
            release.set()
        assert pending.result(20).json() == {"status": "totp_enrollment_required"}
