"""``policy.bots``: the CAPTCHA gate before password attempts: required from 10 attempts for 3 or more
accounts within 10 minutes from one address; a CAPTCHA stored with its answer hashed, bound to the
address, single use, 10 minutes; a right answer passes and restarts the count; exempt networks never asked."""

from __future__ import annotations

import hashlib

import pytest

from keyctl.server import captcha
from keyctl.server.policy import bots
from keyctl.server.policy.core import Context
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import IP, configured, names, refusal, rows

ANSWER = "K7PX3M"


@pytest.fixture(autouse=True)
def known_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CAPTCHA's text is random; these tests need to know the answer."""
    monkeypatch.setattr(captcha, "new_text", lambda: ANSWER)


def _attempts(ctx: Context, count: int, accounts: int, ip: str = IP, event: str = "signin_failed") -> None:
    def work(tx: object, now: float) -> None:
        for n in range(count):
            ctx.audit(tx, event, f"user{n % accounts}@example.com", ip)  # type: ignore[arg-type]

    ctx.run(work)


def _captcha_id(ctx: Context, ip: str = IP, answer: str | None = None) -> str:
    error = refusal(lambda: bots.check(ctx, ip, None, answer))
    assert error.code == "captcha_required"
    assert error.extra is not None
    assert error.extra["captcha"]["image"].startswith("data:image/png;base64,")
    return str(error.extra["captcha"]["id"])


def test_a_captcha_is_required_from_ten_attempts_for_three_accounts(ctx: Context) -> None:
    _attempts(ctx, 9, 3)
    bots.check(ctx, IP, None, None)
    _attempts(ctx, 1, 1)
    _captcha_id(ctx)
    bots.check(ctx, "198.51.100.3", None, None)  # another address


def test_attempts_on_fewer_than_three_accounts_need_no_captcha(ctx: Context) -> None:
    _attempts(ctx, 30, 2)
    bots.check(ctx, IP, None, None)


def test_the_captcha_is_stored_hashed_for_its_address_and_a_right_answer_restarts_the_count(
    ctx: Context, clock: FakeClock
) -> None:
    _attempts(ctx, 10, 3)
    captcha_id = _captcha_id(ctx)
    [stored] = rows(ctx, "SELECT * FROM captchas")
    assert (stored["id"], stored["ip"]) == (captcha_id, IP)
    assert stored["answer_hash"] == hashlib.sha256(ANSWER.encode()).hexdigest()
    assert ANSWER not in repr(stored)
    bots.check(ctx, IP, captcha_id, f" {ANSWER.lower()} ")
    assert rows(ctx, "SELECT * FROM captchas") == []
    bots.check(ctx, IP, None, None)  # counted from the solve
    clock.advance(1)
    _attempts(ctx, 9, 3)
    bots.check(ctx, IP, None, None)
    _attempts(ctx, 1, 1)
    _captcha_id(ctx)
    assert names(ctx).count("captcha_solved") == 1


def test_a_wrong_used_expired_or_other_address_answer_gets_a_new_captcha(
    ctx: Context, clock: FakeClock
) -> None:
    _attempts(ctx, 10, 3)
    _attempts(ctx, 10, 3, ip="198.51.100.3")
    first = _captcha_id(ctx)
    second = refusal(lambda: bots.check(ctx, IP, first, "WRONG1"))
    assert second.code == "captcha_required"
    assert [r["id"] for r in rows(ctx, "SELECT id FROM captchas")] == [second.extra["captcha"]["id"]]  # type: ignore[index]
    assert refusal(lambda: bots.check(ctx, IP, first, ANSWER)).code == "captcha_required"  # used up
    elsewhere = _captcha_id(ctx, "198.51.100.3")
    assert refusal(lambda: bots.check(ctx, IP, elsewhere, ANSWER)).code == "captcha_required"
    late = _captcha_id(ctx)
    clock.advance(bots.CAPTCHA_TTL + 1)
    _attempts(ctx, 10, 3)
    assert refusal(lambda: bots.check(ctx, IP, late, ANSWER)).code == "captcha_required"


def test_the_window_passing_ends_the_requirement(ctx: Context, clock: FakeClock) -> None:
    _attempts(ctx, 10, 3)
    _captcha_id(ctx)
    clock.advance(bots.CAPTCHA_WINDOW)
    bots.check(ctx, IP, None, None)


def test_an_exempt_network_is_never_asked(ctx: Context) -> None:
    _attempts(ctx, 50, 5)
    bots.check(configured(ctx, captcha_exempt=("203.0.113.0/24",)), IP, None, None)
    _captcha_id(configured(ctx, captcha_exempt=("203.0.114.0/24",)))
