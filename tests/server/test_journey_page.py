"""The page follows the sign-in journey (#19 item 6), in Debian's Chromium with Chrome's virtual
authenticator: password, TOTP enrollment, recovery code, the "Log in faster on this device" offer with
"Continue without passkeys" and "Don't show me this again" (the 30-day snooze), "Device registration
successful" with the default device name renamed, the passkey list. A screenshot of each state goes to
test-artifacts/screenshots/ (docs/policy.md shows them: tests/docs/pictures.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from keyctl.server import ServerHandle
from tests.docs.pictures import screenshot
from tests.server.conftest import EMAIL, PASSWORD, FakeClock, audit_events, totp_code
from tests.server.test_browser import log_out, page  # noqa: F401  (the Chromium page fixture)


def shot(browser_page: Page, name: str) -> None:
    screenshot(browser_page, f"journey-{name}")


@pytest.mark.browser
def test_the_page_follows_the_journey(server: ServerHandle, clock: FakeClock, page: Page) -> None:  # noqa: F811
    server.create_user(EMAIL, PASSWORD)
    page.goto(server.url)
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    shot(page, "1-sign-in")
    page.click("#signin-btn")
    expect(page.locator("#enroll-qr svg")).to_be_visible()
    shot(page, "2-totp-enrollment")
    page.fill("#enroll-code", totp_code(page.inner_text("#enroll-secret"), clock()))
    page.click("#enroll-btn")
    expect(page.locator("#recovery")).to_be_visible()
    shot(page, "3-recovery-code")
    page.fill("#recovery-confirm", page.inner_text("#recovery-shown"))
    page.click("#recovery-confirm-btn")

    prompt = page.locator("#prompt")
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("Log in faster on this device")
    shot(page, "4-passkey-offer")
    page.check("#snooze-box")
    page.click("#skip-btn")  # "Continue without passkeys" + "Don't show me this again"
    expect(prompt).to_be_hidden()
    assert [e["event"] for e in audit_events(server) if e["event"].startswith("passkey_prompt")] == [
        "passkey_prompt_snooze"
    ]

    page.click("#register-btn")  # no name given: the server's default
    expect(page.locator("#registered")).to_be_visible()
    expect(page.locator("#registered")).to_contain_text("Device registration successful")
    default = page.input_value("#registered-name")
    assert default
    expect(page.locator(".passkey-name")).to_have_text(default)
    shot(page, "5-registration-successful")
    page.fill("#registered-name", "My laptop")
    page.click("#registered-save-btn")
    expect(page.locator("#message")).to_have_text('Passkey renamed to "My laptop"')
    expect(page.locator("#registered")).to_be_hidden()
    expect(page.locator(".passkey-name")).to_have_text("My laptop")
    shot(page, "6-passkey-list")
    log_out(page)
    shot(page, "7-logged-out")
