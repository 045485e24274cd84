"""Enforced-logout warnings (#19 item 5): the signed-in body and /api/me give both expiry times, the
server ends the session at them, and the page warns 4 hours and 5 minutes before, then counts the last
minute down without a way to dismiss it (Debian's Chromium, with both clocks injected)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from keyctl.server import ServerHandle
from tests.docs.pictures import screenshot
from tests.server.conftest import PASSWORD, FakeClock, client, enroll, error_of, register, totp_code
from tests.server.softauth import SoftAuthenticator
from tests.server.test_browser import CHROMIUM_ARGS

HOUR = 3600
DAY = 24 * HOUR


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_signed_in_body_and_me_give_both_expiry_times(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    signed_in_at = clock()
    clock.advance(10)
    http = account.http
    # The enrollment's signed-in body (what keyctl login --json reports) is checked in test_cli_expiry.
    me = http.get("/api/me").json()["session"]
    assert me == {
        "idle_expires_at": iso(clock() + DAY),
        "absolute_expires_at": iso(signed_in_at + 7 * DAY),
        "server_time": iso(clock()),
    }
    # Idle expiry: each request moves it; a day without one ends the session.
    clock.advance(DAY - 1)
    assert http.get("/api/me").json()["session"]["idle_expires_at"] == iso(clock() + DAY)
    clock.advance(DAY + 1)
    assert error_of(http.get("/api/me")) == "session_expired"


def test_the_absolute_expiry_holds_however_active_the_session(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    ends = clock() + 7 * DAY
    while clock() + 20 * HOUR < ends:
        clock.advance(20 * HOUR)
        assert account.http.get("/api/me").json()["session"]["absolute_expires_at"] == iso(ends)
    clock.now = ends
    assert account.http.get("/api/me").status_code == 200
    clock.advance(1)
    assert error_of(account.http.get("/api/me")) == "session_expired"


def test_password_and_passkey_sign_ins_answer_with_the_expiry(server: ServerHandle, clock: FakeClock) -> None:
    account = enroll(server, clock)
    clock.advance(30)
    http = client(server)
    http.post("/api/signin/password", json={"email": account.email, "password": PASSWORD})
    body = http.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())}).json()
    expected = {"idle_expires_at": iso(clock() + DAY), "absolute_expires_at": iso(clock() + 7 * DAY)}
    assert body["session"] == expected
    key = SoftAuthenticator(server.url)
    assert register(account.http, key).status_code == 200
    clock.advance(100)
    options = http.post("/api/passkeys/login/options", json={}).json()
    body = http.post("/api/passkeys/login/verify", json=key.get(options)).json()
    assert body["session"] == {
        "idle_expires_at": iso(clock() + DAY),
        "absolute_expires_at": iso(clock() + 7 * DAY),
    }


@pytest.fixture
def page_at(clock: FakeClock) -> Iterator[Page]:
    """A page whose clock is Playwright's fake one, set 5 days behind the server's: the page must count
    down from the server's times, not read them as its own."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.clock.install(time=clock() - 5 * DAY)
            page.clock.pause_at(clock() - 5 * DAY + 1)  # time moves only when the test moves it
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.mark.browser
def test_the_page_warns_before_the_enforced_logout(
    server: ServerHandle, clock: FakeClock, page_at: Page
) -> None:
    page = page_at
    account = enroll(server, clock)
    cookie = account.http.cookies["keyctl_session"]
    page.context.add_cookies([{"name": "keyctl_session", "value": cookie, "url": server.url}])
    page.goto(server.url)
    expect(page.locator("#whoami")).to_have_text(account.email)  # /api/me: idle expiry in 24 h
    notice, countdown = page.locator("#expiry-notice"), page.locator("#countdown")
    page.clock.fast_forward((20 * HOUR - 60) * 1000)  # 4 hours and a minute left
    expect(notice).to_be_hidden()

    page.clock.fast_forward(61 * 1000)  # 4 hours minus a second left
    expect(notice).to_be_visible()
    expect(page.locator("#expiry-text")).to_contain_text("in about 4 hours")
    screenshot(page, "expiry-4h")
    page.click("#expiry-dismiss")
    expect(notice).to_be_hidden()

    page.clock.fast_forward((4 * HOUR - 5 * 60 - 2) * 1000)  # 5 minutes and a second left: still dismissed
    expect(notice).to_be_hidden()
    page.clock.fast_forward(2 * 1000)  # 5 minutes minus a second left
    expect(notice).to_be_visible()
    expect(page.locator("#expiry-text")).to_contain_text("ends in 5 minutes")
    screenshot(page, "expiry-5min")

    page.clock.fast_forward((4 * 60 - 2) * 1000)  # 61 s left: no countdown yet
    expect(notice).to_be_visible()
    expect(countdown).to_be_hidden()
    page.clock.fast_forward(2 * 1000)  # 59 s left: the countdown, over everything, no way to close it
    expect(countdown).to_be_visible()
    expect(page.locator("#countdown-seconds")).to_have_text("59")
    expect(notice).to_be_hidden()
    assert countdown.locator("button, a, input").count() == 0
    page.keyboard.press("Escape")
    page.clock.run_for(10_000)
    expect(page.locator("#countdown-seconds")).to_have_text("49")
    screenshot(page, "expiry-countdown")

    # At the end the page logs out, as the server does at the same moment.
    clock.advance(DAY + 1)
    page.clock.run_for(50_000)
    expect(page.locator("#signin")).to_be_visible()
    expect(countdown).to_be_hidden()
    expect(page.locator("#message")).to_have_text("Session expired: you were logged out, sign in again")
    expect(page.locator("#whoami")).to_have_text("")
