"""Bot detection: when one address makes many password attempts across accounts in a short time
(CAPTCHA_ATTEMPTS attempts for CAPTCHA_ACCOUNTS or more accounts within CAPTCHA_WINDOW), each further
password attempt from it needs a CAPTCHA (an image rendered by ``keyctl.server.captcha``): the refusal
``captcha_required`` carries one, and the next attempt sends its id and answer. A correct answer resets
the count (attempts are counted from the last solve). Addresses on the admin allow-list
(``Settings.captcha_exempt``, e.g. CI runners) are never asked; passkey sign-ins never are."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from keyctl.server import captcha
from keyctl.server.policy.core import Context, PolicyError
from keyctl.server.storage import Tx

CAPTCHA_WINDOW = 600
CAPTCHA_ATTEMPTS = 10
CAPTCHA_ACCOUNTS = 3
CAPTCHA_TTL = 600
_ATTEMPTS = ("signin_failed", "signin_password_ok", "signin_password_breached", "risk_blocked")
CAPTCHA_MESSAGE = (
    "Type the characters in the image: many sign-in attempts came from your network (a passkey sign-in "
    "needs no CAPTCHA)"
)


def _hash(answer: str) -> str:
    return hashlib.sha256(answer.strip().upper().encode()).hexdigest()


def exempt(ctx: Context, ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in ctx.settings.captcha_exempt)


def _required(db: Tx, ip: str, now: float) -> bool:
    solved = db.one("SELECT max(time) AS t FROM audit WHERE event = 'captcha_solved' AND ip = ?", (ip,))
    since = max(now - CAPTCHA_WINDOW, (solved["t"] if solved and solved["t"] is not None else 0.0))
    placeholders = ", ".join("?" for _ in _ATTEMPTS)
    row = db.one(
        "SELECT count(*) AS n, count(DISTINCT email) AS accounts FROM audit "
        f"WHERE ip = ? AND time > ? AND event IN ({placeholders})",
        (ip, since, *_ATTEMPTS),
    )
    return row is not None and row["n"] >= CAPTCHA_ATTEMPTS and row["accounts"] >= CAPTCHA_ACCOUNTS


def check(ctx: Context, ip: str, captcha_id: str | None, answer: str | None) -> None:
    """Before a password attempt: pass, or refuse with ``captcha_required`` and a new CAPTCHA. A given
    CAPTCHA is used up either way."""

    def work(db: Tx, now: float) -> None:
        if exempt(ctx, ip) or not _required(db, ip, now):
            return
        if captcha_id:
            row = db.one("DELETE FROM captchas WHERE id = ? AND ip = ? RETURNING *", (captcha_id, ip))
            if (
                row is not None
                and now - row["created_at"] <= CAPTCHA_TTL
                and hmac.compare_digest(row["answer_hash"], _hash(answer or ""))
            ):
                ctx.audit(db, "captcha_solved", None, ip)
                return
        text = captcha.new_text()
        new_id = secrets.token_urlsafe(16)

        def record(db: Tx) -> None:
            if captcha_id:
                db.execute("DELETE FROM captchas WHERE id = ?", (captcha_id,))
            db.execute("DELETE FROM captchas WHERE created_at < ?", (now - CAPTCHA_TTL,))
            db.execute(
                "INSERT INTO captchas (id, ip, answer_hash, created_at) VALUES (?, ?, ?, ?)",
                (new_id, ip, _hash(text), now),
            )
            ctx.audit(db, "captcha_required", None, ip, answered=bool(captcha_id))

        extra = {"captcha": {"id": new_id, "image": captcha.data_url(text)}}
        raise PolicyError("captcha_required", CAPTCHA_MESSAGE, record, extra=extra)

    ctx.run(work)
