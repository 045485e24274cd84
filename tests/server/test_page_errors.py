"""The sign-in page's words for what goes wrong (issue #14 item 10), in Debian's Chromium through Playwright
with Chrome's CDP virtual authenticator: no WebAuthn at all, each create()/get() failure, a server that
does not answer, and the password change a breached password requires."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect, sync_playwright

from keyctl.server import ServerHandle, passwords
from tests.docs.pictures import screenshot
from tests.server.conftest import EMAIL, PASSWORD, FakeClock, enroll, sql, totp_code
from tests.server.test_browser import CHROMIUM_ARGS

pytestmark = pytest.mark.browser


@pytest.fixture
def context() -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser.new_context()
        finally:
            browser.close()


def with_authenticator(context: BrowserContext, **options: Any) -> Page:
    page = context.new_page()
    page.set_default_timeout(15_000)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator = {
        "protocol": "ctap2",
        "transport": "usb",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        **options,
    }
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": authenticator})
    return page


def signed_in_page(server: ServerHandle, clock: FakeClock, page: Page) -> None:
    """The account enrolled over HTTP, then signed in on the page with password + TOTP."""
    account = enroll(server, clock)
    clock.advance(30)
    page.goto(server.url)
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("#signin-btn")
    page.fill("#totp-code", totp_code(account.secret, clock()))
    page.click("#totp-btn")
    expect(page.locator("#whoami")).to_have_text(EMAIL)


def rewrite_json(page: Page, path: str, change: Any) -> None:
    """Let the page's request through to the server and hand the page a changed JSON answer."""

    def handle(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, body=json.dumps(change(response.json())))

    page.route(f"**{path}", handle)


def message(page: Page) -> str:
    return page.inner_text("#message")


def test_a_browser_without_webauthn_says_passkeys_are_not_supported(
    server: ServerHandle, clock: FakeClock, context: BrowserContext
) -> None:
    context.add_init_script("delete window.PublicKeyCredential;")
    page = context.new_page()
    page.goto(server.url)
    expect(page.locator("#no-passkeys")).to_be_visible()
    expect(page.locator("#no-passkeys")).to_contain_text("Passkeys not supported on this device")
    expect(page.locator("#passkey-btn")).to_be_disabled()
    screenshot(page, "passkeys-not-supported")
    account = enroll(server, clock)  # password + TOTP still work
    clock.advance(30)
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("#signin-btn")
    page.fill("#totp-code", totp_code(account.secret, clock()))
    page.click("#totp-btn")
    expect(page.locator("#whoami")).to_have_text(EMAIL)
    expect(page.locator("#register-btn")).to_be_disabled()


def test_a_browser_with_webauthn_offers_passkeys(server: ServerHandle, context: BrowserContext) -> None:
    page = with_authenticator(context)
    page.goto(server.url)
    expect(page.locator("#passkey-btn")).to_be_enabled()
    expect(page.locator("#no-passkeys")).to_be_hidden()


def test_registering_the_same_authenticator_twice(
    server: ServerHandle, clock: FakeClock, context: BrowserContext
) -> None:
    page = with_authenticator(context)
    signed_in_page(server, clock, page)
    page.click("#register-btn")
    expect(page.locator("#message")).to_contain_text("registered")
    page.click("#register-btn")
    expect(page.locator("#message")).to_have_text("Passkey already registered for this device")


def test_a_user_who_is_not_verified_cancels(
    server: ServerHandle, clock: FakeClock, context: BrowserContext
) -> None:
    """The authenticator cannot verify the user where the server asks for it: the browser says only
    NotAllowedError, as for a cancel, and quickly (so not a timeout)."""
    page = with_authenticator(context, isUserVerified=False)
    rewrite_json(
        page,
        "/api/passkeys/register/options",
        lambda o: {
            **o,
            "authenticatorSelection": {**o["authenticatorSelection"], "userVerification": "required"},
        },
    )
    rewrite_json(page, "/api/passkeys/login/options", lambda o: {**o, "userVerification": "required"})
    signed_in_page(server, clock, page)
    page.click("#register-btn")
    expect(page.locator("#message")).to_have_text("Passkey setup canceled")
    page.click("#logout-btn")
    page.click("#passkey-btn")
    expect(page.locator("#message")).to_have_text("Request canceled")


def test_no_touch_within_the_timeout(server: ServerHandle, context: BrowserContext) -> None:
    page = with_authenticator(context, automaticPresenceSimulation=False)
    rewrite_json(page, "/api/passkeys/login/options", lambda options: {**options, "timeout": 1500})
    page.goto(server.url)
    page.click("#passkey-btn")
    expect(page.locator("#message")).to_have_text("Passkey request timed out")


def test_options_for_another_site(server: ServerHandle, context: BrowserContext) -> None:
    page = with_authenticator(context)
    rewrite_json(page, "/api/passkeys/login/options", lambda options: {**options, "rpId": "example.com"})
    page.goto(server.url)
    page.click("#passkey-btn")
    expect(page.locator("#message")).to_contain_text("Passkeys not supported on this address")


def test_a_server_that_does_not_answer_properly(server: ServerHandle, context: BrowserContext) -> None:
    page = with_authenticator(context)
    page.route(
        "**/api/passkeys/login/options",
        lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>Bad gateway</h1>"),
    )
    page.goto(server.url)
    page.click("#passkey-btn")
    expect(page.locator("#message")).to_contain_text("Passkey unavailable")


def test_a_breached_password_is_changed_on_the_page(
    server: ServerHandle, clock: FakeClock, context: BrowserContext
) -> None:
    account = enroll(server, clock)
    sql(server, "UPDATE users SET password_hash = ? RETURNING id", (passwords.hash_password("iloveyou"),))
    clock.advance(30)
    page = with_authenticator(context)
    page.goto(server.url)
    page.fill("#email", EMAIL)
    page.fill("#password", "iloveyou")
    page.click("#signin-btn")
    expect(page.locator("#change")).to_be_visible()
    page.fill("#new-password", "Sunshine2024!")
    page.click("#change-btn")
    expect(page.locator("#message")).to_contain_text("common or breached")
    page.fill("#new-password", "a fresh and uncommon passphrase")
    page.click("#change-btn")
    expect(page.locator("#totp")).to_be_visible()
    page.fill("#totp-code", totp_code(account.secret, clock()))
    page.click("#totp-btn")
    expect(page.locator("#whoami")).to_have_text(EMAIL)
