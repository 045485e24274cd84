"""Forgotten passwords (#19 item 1): a single-use reset link valid 24 hours, the same answer for unknown
accounts, the password rules and the breach list, every session ended, TOTP and passkeys kept, audited;
an admin can send a link too; the page's "Forgot password" and the reset page in Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from keyctl.server import ServerHandle
from tests.server.conftest import (
    EMAIL,
    PASSWORD,
    FakeClock,
    admin,
    audit_events,
    client,
    enroll,
    error_of,
    register,
    sign_in,
    snapshot,
    totp_code,
)
from tests.server.softauth import SoftAuthenticator
from tests.server.test_browser import CHROMIUM_ARGS

NEW_PASSWORD = "a new and long passphrase 42"


def reset_links(server: ServerHandle, to: str = EMAIL) -> list[str]:
    if not server.outbox_path.exists():
        return []
    mails = [json.loads(line) for line in server.outbox_path.read_text().splitlines()]
    return [m["link"] for m in mails if m["to"] == to and m["subject"] == "Reset your password"]


def forgot(http: httpx.Client, email: str) -> httpx.Response:
    return http.post("/api/password/forgot", json={"email": email})


def reset(http: httpx.Client, link: str, password: str) -> httpx.Response:
    return http.post("/api/password/reset", json={"token": link.rsplit("/", 1)[1], "new_password": password})


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(
    server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(server, clock)
    assert register(account.http, SoftAuthenticator(server.url)).status_code == 200
    other = sign_in(server, clock, account)
    http = client(server)
    known, unknown = forgot(http, EMAIL.upper()), forgot(http, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert (
        known.json()
        == unknown.json()
        == {
            "status": "reset_link_sent",
            "message": "If an account exists for this email, a reset link was sent",
        }
    )
    assert reset_links(server, "nobody@example.com") == []
    [link] = reset_links(server)
    assert link.startswith(f"{server.url}/reset/")
    # The password rules and the breach list apply; a refused password changes nothing and keeps the link.
    before = snapshot(server)
    assert error_of(reset(http, link, "short")) == "weak_password"
    assert error_of(reset(http, link, "password1234")) == "weak_password"
    assert snapshot(server) == before
    done = reset(http, link, NEW_PASSWORD)
    assert done.json() == {"status": "password_reset", "email": EMAIL}, done.text
    assert error_of(reset(http, link, NEW_PASSWORD + "x")) == "not_found"  # single use
    for session in (account.http, other):
        assert error_of(session.get("/api/me")) == "not_signed_in"
    assert error_of(
        client(server).post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    ) == ("invalid_credentials")
    # TOTP (and its used steps) and passkeys are kept: the next sign-in asks for a code, not an enrollment.
    clock.advance(30)
    fresh = client(server)
    step = fresh.post("/api/signin/password", json={"email": EMAIL, "password": NEW_PASSWORD})
    assert step.json() == {"status": "totp_required"}
    assert (
        fresh.post("/api/signin/totp", json={"code": totp_code(account.secret, clock())}).status_code == 200
    )
    assert len(fresh.get("/api/me").json()["passkeys"]) == 1
    events = [(e["event"], e["detail"]) for e in audit_events(server)]
    assert ("password_changed", {"reason": "reset"}) in events
    assert ("password_reset_requested", {"known": False}) in events


def test_a_reset_link_expires_after_24_hours(server: ServerHandle, clock: FakeClock) -> None:
    server.create_user(EMAIL, PASSWORD)
    http = client(server)
    forgot(http, EMAIL)
    clock.advance(3600)
    forgot(http, EMAIL)
    first, second = reset_links(server)
    clock.advance(23 * 3600 + 1)  # the first is 24 h and 1 s old, the second 23 h and 1 s
    assert error_of(reset(http, first, NEW_PASSWORD)) == "not_found"
    assert reset(http, second, NEW_PASSWORD).status_code == 200


def test_a_reset_ends_the_other_links(server: ServerHandle, clock: FakeClock) -> None:
    server.create_user(EMAIL, PASSWORD)
    http = client(server)
    forgot(http, EMAIL)
    forgot(http, EMAIL)
    first, second = reset_links(server)
    assert reset(http, second, NEW_PASSWORD).status_code == 200
    assert error_of(reset(http, first, PASSWORD + " again")) == "not_found"


def test_an_admin_sends_a_reset_link(server: ServerHandle, clock: FakeClock) -> None:
    server.create_user(EMAIL, PASSWORD)
    with admin(server) as a:
        sent = a.post(f"/api/admin/users/{EMAIL}/password-reset", json={})
        assert sent.status_code == 201, sent.text
        assert error_of(a.post("/api/admin/users/nobody@example.com/password-reset", json={})) == "not_found"
    assert client(server).post(f"/api/admin/users/{EMAIL}/password-reset", json={}).status_code == 401
    assert reset_links(server) == [sent.json()["reset_url"]]
    assert reset(client(server), sent.json()["reset_url"], NEW_PASSWORD).status_code == 200
    assert ("password_reset_requested", {"by": "admin", "known": True}) in [
        (e["event"], e["detail"]) for e in audit_events(server)
    ]


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.mark.browser
def test_forgot_password_on_the_page(server: ServerHandle, clock: FakeClock, page: Page) -> None:
    server.create_user(EMAIL, PASSWORD)
    page.goto(server.url)
    page.fill("#email", EMAIL)
    page.click("#forgot-btn")
    expect(page.locator("#forgot")).to_be_visible()
    expect(page.locator("#forgot-email")).to_have_value(EMAIL)
    page.click("#forgot-send-btn")
    expect(page.locator("#message")).to_have_text(
        "If an account exists for this email, a reset link was sent"
    )
    expect(page.locator("#signin")).to_be_visible()
    [link] = reset_links(server)
    page.goto(link)
    page.fill("#password", "password1234")
    page.click("#reset-btn")
    expect(page.locator("#message")).to_have_text(
        "this password is in the list of common or breached passwords"
    )
    page.fill("#password", NEW_PASSWORD)
    page.click("#reset-btn")
    expect(page.locator("#message")).to_contain_text(f"Password changed for {EMAIL}")
    step = client(server).post("/api/signin/password", json={"email": EMAIL, "password": NEW_PASSWORD})
    assert step.json() == {"status": "totp_enrollment_required"}
