"""The HTML sign-in page in a real browser: Debian's Chromium through Playwright, with Chrome's CDP
virtual authenticator. Password + TOTP enrollment, register a passkey, log out, log in with it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from keyctl.server import ServerHandle
from tests.server.conftest import EMAIL, PASSWORD, FakeClock, admin, audit_events, totp_code

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable", {"enableUI": False})
            cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "usb",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                    }
                },
            )
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def log_out(page: Page) -> None:
    """Log out and check that the page kept no trace of the session, so that what the next sign-in shows
    can only come from that sign-in."""
    page.click("#logout-btn")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#message")).to_have_text("Logged out")
    expect(page.locator("#whoami")).to_have_text("")
    expect(page.locator("#passkey-list li")).to_have_count(0)
    expect(page.locator("#prompt")).to_be_hidden()


def passkey_log_in(page: Page, email: str) -> dict[str, Any]:
    """Click "Continue with a passkey" with `email` typed (or none) and wait until this sign-in, and no
    earlier one, shows the signed-in view. Returns the login options request body the page sent."""
    page.fill("#email", email)
    with (
        page.expect_request("**/api/passkeys/login/options") as options_request,
        page.expect_response("**/api/passkeys/login/verify") as verify_response,
    ):
        page.click("#passkey-btn")
    assert verify_response.value.status == 200, verify_response.value.text()
    expect(page.locator("#message")).to_have_text("Signed in with a passkey")
    expect(page.locator("#home")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text(EMAIL)
    body: dict[str, Any] = options_request.value.post_data_json
    return body


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.browser
def test_browser_sign_in_register_passkey_and_log_in_with_it(
    server: ServerHandle, clock: FakeClock, page: Page
) -> None:
    server.create_user(EMAIL, PASSWORD)
    page.goto(server.url)
    # First sign-in: password, TOTP enrollment from the page's secret, recovery code confirmation.
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("#signin-btn")
    expect(page.locator("#enroll")).to_be_visible()
    expect(page.locator("#enroll-qr svg")).to_be_visible()
    secret = page.inner_text("#enroll-secret")
    page.fill("#enroll-code", totp_code(secret, clock()))
    page.click("#enroll-btn")
    expect(page.locator("#recovery")).to_be_visible()
    page.fill("#recovery-confirm", page.inner_text("#recovery-shown"))
    page.click("#recovery-confirm-btn")
    expect(page.locator("#whoami")).to_have_text(EMAIL)
    expect(page.locator("#prompt")).to_be_visible()  # the passkey offer
    log_out(page)

    # A later sign-in with password + TOTP, then register a passkey.
    clock.advance(30)
    page.fill("#password", PASSWORD)
    page.click("#signin-btn")
    expect(page.locator("#totp")).to_be_visible()
    page.fill("#totp-code", totp_code(secret, clock()))
    page.click("#totp-btn")
    expect(page.locator("#home")).to_be_visible()
    page.fill("#register-name", "Chromium virtual key")
    page.click("#register-btn")
    expect(page.locator("#message")).to_have_text('Passkey "Chromium virtual key" registered')
    expect(page.locator("#passkey-list li")).to_have_count(1)
    expect(page.locator("#prompt")).to_be_hidden()
    # Registering the same authenticator again is refused through excludeCredentials.
    page.click("#register-btn")
    expect(page.locator("#message")).to_have_text("Passkey already registered for this device")
    log_out(page)

    # Log in with the passkey, username-less (discoverable), then username-first: no TOTP step.
    assert passkey_log_in(page, "") == {}
    log_out(page)
    assert passkey_log_in(page, EMAIL) == {"email": EMAIL}

    with admin(server) as a:
        passkey = a.get("/api/admin/users").json()["users"][0]["passkeys"][0]
    assert passkey["name"] == "Chromium virtual key"
    assert passkey["sign_count"] >= 2  # Chrome's virtual authenticator counts signatures
    assert passkey["last_used_at"] is not None

    def passkey_logins() -> int:
        return sum(1 for e in audit_events(server) if e["detail"].get("method") == "passkey")

    wait_until(lambda: passkey_logins() >= 2)
    assert passkey_logins() == 2
