"""``policy.audit`` and the audit writer of ``core``: events with their JSON detail and the injected
clock's time, paged by id for the admin, append-only on both engines, and a refusal's audit event
written after its unit of work was rolled back."""

from __future__ import annotations

import pytest

from keyctl.server.policy import audit
from keyctl.server.policy.core import Context, PolicyError
from tests.server.conftest import FakeClock
from tests.server.policy.conftest import EMAIL, IP, add_user, refusal, rows


def test_an_event_has_the_clocks_time_and_its_detail_as_json(ctx: Context, clock: FakeClock) -> None:
    ctx.db.run(lambda tx: ctx.audit(tx, "signin_ok", EMAIL, IP, method="totp", extra=[1, 2]))
    [event], cursor = audit.admin_audit(ctx, 0, 10)
    assert cursor is None
    assert (event.time, event.event, event.email, event.ip) == (clock(), "signin_ok", EMAIL, IP)
    assert event.detail == {"method": "totp", "extra": [1, 2]}
    assert event.as_json()["detail"] == {"extra": [1, 2], "method": "totp"}
    assert rows(ctx, "SELECT detail FROM audit") == [{"detail": '{"extra": [1, 2], "method": "totp"}'}]


def test_the_log_pages_by_id(ctx: Context, clock: FakeClock) -> None:
    def work(tx: object, now: float) -> None:
        for n in range(5):
            ctx.audit(tx, f"e{n}", None, None)  # type: ignore[arg-type]

    ctx.run(work)
    seen: list[str] = []
    events, cursor = audit.admin_audit(ctx, 0, 2)
    seen += [e.event for e in events]
    while cursor is not None:
        events, cursor = audit.admin_audit(ctx, cursor, 2)
        seen += [e.event for e in events]
    assert seen == [f"e{n}" for n in range(5)]
    assert audit.admin_audit(ctx, 0, 5)[1] is None


@pytest.mark.parametrize("statement", ["UPDATE audit SET event = 'x'", "DELETE FROM audit"])
def test_the_log_is_append_only(ctx: Context, statement: str) -> None:
    ctx.db.run(lambda tx: ctx.audit(tx, "signin_ok", EMAIL, IP))
    with pytest.raises(Exception, match="append-only"):
        ctx.db.run(lambda tx: tx.execute(statement))
    assert [e.event for e in audit.admin_audit(ctx, 0, 10)[0]] == ["signin_ok"]


def test_a_refusal_rolls_its_work_back_and_keeps_only_its_audit_event(ctx: Context) -> None:
    add_user(ctx)

    def work(tx: object, now: float) -> None:
        ctx.audit(tx, "signin_password_ok", EMAIL, IP)  # type: ignore[arg-type]
        tx.execute("UPDATE users SET last_sign_in_at = 1")  # type: ignore[attr-defined]
        raise ctx.refuse("blocked", "no", "signin_refused_blocked", EMAIL, IP, extra="x")

    error = refusal(lambda: ctx.run(work))
    assert isinstance(error, PolicyError)
    assert error.code == "blocked"
    assert [(e.event, e.detail) for e in audit.admin_audit(ctx, 0, 10)[0]] == [
        ("signin_refused_blocked", {"extra": "x", "reason": "blocked"})
    ]
    assert rows(ctx, "SELECT last_sign_in_at FROM users") == [{"last_sign_in_at": None}]
