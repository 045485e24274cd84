"""Bot detection (#19 item 4): many password attempts from one address across accounts make its next
password attempts need a CAPTCHA (a PNG rendered by the server, read here with Pillow); a correct answer
resets the count; a wrong one gets a new image; an allow-listed address and passkey sign-ins are never
asked; `keyctl login` with a password stops with an error naming both ways out. The characters are fixed
by patching the generator (the server runs in this process); the image is checked to be a real picture."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from keyctl.server import ServerHandle, captcha, start
from tests.docs.pictures import screenshot
from tests.server.conftest import PASSWORD, FakeClock, enroll, error_of, http_client, register
from tests.server.softauth import SoftAuthenticator

ANSWER = "K7MXP2"
CAROL = "carol@example.com"


@pytest.fixture
def server(
    db_target: Path | str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerHandle]:
    monkeypatch.setattr(captcha, "new_text", lambda: ANSWER)
    with start(
        db_target, clock=clock, rate_limit=100_000, ip_max_failures=10_000, trusted_proxies=("127.0.0.1",),
        captcha_exempt=("192.0.2.0/24",),
    ) as handle:  # fmt: skip
        yield handle


def from_ip(server: ServerHandle, ip: str) -> httpx.Client:
    return http_client(server.url, headers={"X-Forwarded-For": ip})


def attempt(
    http: httpx.Client, email: str, password: str = "wrong password 1234", **more: str
) -> httpx.Response:
    return http.post("/api/signin/password", json={"email": email, "password": password, **more})


def spray(http: httpx.Client, count: int, name: str = "user") -> None:
    """Wrong passwords for 3 accounts in turn (each stays under the 5-failure block)."""
    for n in range(count):
        assert error_of(attempt(http, f"{name}{n % 3}@example.com")) == "invalid_credentials"


def test_many_attempts_across_accounts_need_a_captcha_until_solved(
    server: ServerHandle, clock: FakeClock
) -> None:
    server.create_user(CAROL, PASSWORD)
    http = from_ip(server, "203.0.113.5")
    spray(http, 10)  # 10 attempts for 3 accounts within 10 minutes
    asked = attempt(http, CAROL, PASSWORD)
    assert asked.status_code == 403
    body = asked.json()
    assert body["error"] == "captcha_required"
    assert "Type the characters in the image" in body["message"]
    image = Image.open(
        io.BytesIO(base64.b64decode(body["captcha"]["image"].removeprefix("data:image/png;base64,")))
    )
    assert image.format == "PNG"
    assert image.size == (240, 80)
    assert sum(1 for count in image.convert("L").histogram() if count) > 20  # drawn on, not blank
    # Another address is not affected; a wrong answer is refused with a new CAPTCHA; the old one is used up.
    assert attempt(from_ip(server, "198.51.100.1"), CAROL, PASSWORD).status_code == 200
    wrong = attempt(http, CAROL, PASSWORD, captcha_id=body["captcha"]["id"], captcha_answer="AAAAAA")
    assert error_of_captcha(wrong) != body["captcha"]["id"]
    again = attempt(http, CAROL, PASSWORD, captcha_id=body["captcha"]["id"], captcha_answer=ANSWER)
    new_id = error_of_captcha(again)
    solved = attempt(http, CAROL, PASSWORD, captcha_id=new_id, captcha_answer=ANSWER.lower())
    assert solved.json() == {"status": "totp_enrollment_required"}, solved.text
    # Solving resets the count: 10 more attempts pass, the next one asks again.
    clock.advance(1)
    spray(http, 10, "other")
    assert error_of_captcha(attempt(http, "third@example.com"))
    # The window passes: no CAPTCHA.
    clock.advance(601)
    assert error_of(attempt(http, "third@example.com")) == "invalid_credentials"


def error_of_captcha(response: httpx.Response) -> str:
    body = response.json()
    assert body["error"] == "captcha_required", body
    return str(body["captcha"]["id"])


def test_an_allow_listed_address_is_never_asked(server: ServerHandle, clock: FakeClock) -> None:
    server.create_user(CAROL, PASSWORD)
    http = from_ip(server, "192.0.2.77")
    spray(http, 12)
    assert attempt(http, CAROL, PASSWORD).json() == {"status": "totp_enrollment_required"}


def test_a_passkey_sign_in_is_never_asked(server: ServerHandle, clock: FakeClock) -> None:
    """The way out `keyctl login` names works: the address that needs a CAPTCHA for passwords signs in
    with a passkey, and the CAPTCHA is still asked of its next password attempt."""
    account = enroll(server, clock, CAROL)
    key = SoftAuthenticator(server.url)
    assert register(account.http, key).status_code == 200
    http = from_ip(server, "203.0.113.5")
    spray(http, 10)
    error_of_captcha(attempt(http, CAROL, PASSWORD))
    options = http.post("/api/passkeys/login/options", json={}).json()
    signed_in = http.post("/api/passkeys/login/verify", json=key.get(options))
    assert signed_in.status_code == 200, signed_in.text
    assert http.get("/api/me").status_code == 200
    error_of_captcha(attempt(from_ip(server, "203.0.113.5"), CAROL, PASSWORD))


def test_keyctl_login_with_a_password_names_the_ways_out(
    server: ServerHandle, clock: FakeClock, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.create_user("user0@example.com", PASSWORD)
    spray(from_ip(server, "127.0.0.1"), 10)  # keyctl connects from 127.0.0.1 without a forwarded address
    monkeypatch.setenv("PW", PASSWORD)
    result = cli("login", "--server", server.url, "--user", "user0@example.com", "--password-env", "PW")
    assert result.exit_code == 21, result.stdout + result.stderr
    assert "Type the characters in the image" in result.stderr
    assert "sign in with a passkey, which needs none" in result.stderr
    assert "--captcha-allow" in result.stderr


@pytest.mark.browser
def test_the_page_shows_the_captcha_and_sends_the_answer(server: ServerHandle, clock: FakeClock) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.server.test_browser import CHROMIUM_ARGS

    server.create_user(CAROL, PASSWORD)
    spray(from_ip(server, "127.0.0.1"), 10)  # Chromium connects from 127.0.0.1
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(15_000)
            page.goto(server.url)
            page.fill("#email", CAROL)
            page.fill("#password", PASSWORD)
            page.click("#signin-btn")
            expect(page.locator("#captcha-image")).to_be_visible()
            expect(page.locator("#message")).to_contain_text("Type the characters in the image")
            assert page.evaluate("document.getElementById('captcha-image').naturalWidth") == 240
            screenshot(page, "captcha")
            page.fill("#captcha-answer", ANSWER)
            page.click("#signin-btn")
            expect(page.locator("#enroll")).to_be_visible()
        finally:
            browser.close()
