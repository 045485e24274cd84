"""``policy.prompt``: when the add-a-passkey prompt is due (no passkey; not within 7 days and 10 sign-ins
of a skip; not within 30 days of a snooze), what skip and snooze write, and the signed-in page (``me``)."""

from __future__ import annotations

from keyctl.server.policy import prompt
from keyctl.server.policy.core import IDLE_TTL, SKIP_SIGNINS, SKIP_TTL, SNOOZE_TTL, Context
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import (
    EMAIL,
    IP,
    ORIGIN,
    add_passkey,
    add_user,
    events,
    refusal,
    rows,
    session_for,
    state,
)
from tests.server.softauth import SoftAuthenticator

NOW = 1_800_000_000.0


def _user(**fields: object) -> dict[str, object]:
    return {"prompt_snoozed_until": None, "prompt_skipped_at": None, "signins_since_skip": 0, **fields}


def test_the_prompt_is_due_without_a_passkey_and_never_with_one() -> None:
    assert prompt.prompt_due(_user(), 0, NOW)
    assert not prompt.prompt_due(_user(), 1, NOW)


def test_a_skip_holds_for_seven_days_and_fewer_than_ten_sign_ins() -> None:
    skipped = _user(prompt_skipped_at=NOW)
    assert not prompt.prompt_due(skipped, 0, NOW + SKIP_TTL - 1)
    assert prompt.prompt_due(skipped, 0, NOW + SKIP_TTL)
    assert not prompt.prompt_due(
        _user(prompt_skipped_at=NOW, signins_since_skip=SKIP_SIGNINS - 1), 0, NOW + 1
    )
    assert prompt.prompt_due(_user(prompt_skipped_at=NOW, signins_since_skip=SKIP_SIGNINS), 0, NOW + 1)


def test_a_snooze_holds_until_its_end() -> None:
    snoozed = _user(prompt_snoozed_until=NOW + SNOOZE_TTL)
    assert not prompt.prompt_due(snoozed, 0, NOW + SNOOZE_TTL - 1)
    assert prompt.prompt_due(snoozed, 0, NOW + SNOOZE_TTL)


def test_skip_and_snooze_write_their_times_and_are_audited(ctx: Context, clock: FakeClock) -> None:
    user = add_user(ctx)
    ctx.db.run(lambda tx: tx.execute("UPDATE users SET signins_since_skip = 4"))
    token = session_for(ctx, user)
    prompt.passkey_prompt(ctx, token, "skip", IP)
    assert rows(ctx, "SELECT prompt_skipped_at, signins_since_skip, prompt_snoozed_until FROM users") == [
        {"prompt_skipped_at": clock(), "signins_since_skip": 0, "prompt_snoozed_until": None}
    ]
    clock.advance(5)
    prompt.passkey_prompt(ctx, token, "snooze", IP)
    assert rows(ctx, "SELECT prompt_snoozed_until FROM users") == [
        {"prompt_snoozed_until": clock() + SNOOZE_TTL}
    ]
    assert events(ctx) == [("passkey_prompt_skip", EMAIL, IP, {}), ("passkey_prompt_snooze", EMAIL, IP, {})]
    before = state(ctx)
    assert refusal(lambda: prompt.passkey_prompt(ctx, token, "later", IP)).code == "invalid_request"
    assert state(ctx) == before


def test_me_shows_the_prompt_the_passkeys_and_when_the_session_ends(ctx: Context, clock: FakeClock) -> None:
    user = add_user(ctx)
    token = session_for(ctx, user)
    clock.advance(100)
    page = prompt.me(ctx, token)
    assert (page.email, page.passkey_prompt, page.passkeys, page.now) == (EMAIL, True, (), clock())
    assert page.expiry.idle_expires_at == clock() + IDLE_TTL
    assert page.expiry.absolute_expires_at == clock() - 100 + 7 * 24 * 3600
    add_passkey(ctx, token, SoftAuthenticator(ORIGIN), name="Desk key")
    page = prompt.me(ctx, token)
    assert (page.passkey_prompt, [p.name for p in page.passkeys]) == (False, ["Desk key"])
