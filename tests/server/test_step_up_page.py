"""The page's step-up (#19 items 2 and 6) in Debian's Chromium with Chrome's virtual authenticator: rename
and delete a passkey from the list after the 5 minutes, confirming once with a code from oathtool and
once with the passkey; the action runs again by itself after the confirmation."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from keyctl.server import ServerHandle
from tests.docs.pictures import screenshot
from tests.server.conftest import FakeClock, enroll, totp_code
from tests.server.test_browser import page  # noqa: F401  (the Chromium page with a virtual authenticator)


@pytest.mark.browser
def test_rename_and_delete_a_passkey_with_step_up(
    server: ServerHandle,
    clock: FakeClock,
    page: Page,  # noqa: F811
) -> None:
    account = enroll(server, clock)
    page.context.add_cookies(
        [{"name": "keyctl_session", "value": account.http.cookies["keyctl_session"], "url": server.url}]
    )
    page.goto(server.url)
    expect(page.locator("#whoami")).to_have_text(account.email)
    page.fill("#register-name", "Chromium key")
    page.click("#register-btn")  # the sign-in is a fresh verification
    expect(page.locator("#message")).to_have_text('Passkey "Chromium key" registered')

    clock.advance(5 * 60 + 30)
    page.locator(".passkey-rename").fill("Work laptop")
    page.click(".rename-btn")
    expect(page.locator("#stepup")).to_be_visible()
    expect(page.locator("#message")).to_contain_text("Confirm it's you")
    expect(page.locator(".passkey-name")).to_have_text("Chromium key")
    screenshot(page, "step-up")
    page.fill("#stepup-code", totp_code(account.secret, clock()))
    page.click("#stepup-totp-btn")
    expect(page.locator("#message")).to_have_text('Passkey renamed to "Work laptop"')
    expect(page.locator(".passkey-name")).to_have_text("Work laptop")
    expect(page.locator("#stepup")).to_be_hidden()
    screenshot(page, "passkey-list")

    clock.advance(5 * 60)
    page.click(".delete-btn")
    expect(page.locator("#stepup")).to_be_visible()
    page.click("#stepup-passkey-btn")
    expect(page.locator("#message")).to_have_text('Passkey "Work laptop" deleted')
    expect(page.locator("#passkey-list li")).to_have_count(0)
