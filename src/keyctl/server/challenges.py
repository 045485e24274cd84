"""Ceremony challenges waiting for their response: in memory, single-use, expiring.

A challenge is a 5-minute nonce, not account state, so it is kept out of SQLite: that saves a commit per
ceremony (about a tenth of the server's CPU time per passkey login). Losing the pending ones when the
server restarts turns an in-flight ceremony into "Session expired", the answer an expired challenge gets;
nothing committed is lost. A challenge is used up the moment a response names it, whatever the outcome,
so a failed verify cannot be retried and two concurrent verifies cannot both use it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

CHALLENGE_TTL = 5 * 60
SWEEP_EVERY = 60.0


@dataclass(frozen=True)
class Challenge:
    value: bytes
    kind: str  # "login" | "register"
    created_at: float
    user_verification: str
    user_id: int | None  # registration: the account; login: the named user (username-first) or None
    username_first: bool = False
    session_hash: str | None = None  # registration: the session it was issued to
    name: str | None = None  # registration: the device name asked for


class Challenges:
    def __init__(self) -> None:
        self._pending: dict[bytes, Challenge] = {}
        self._lock = threading.Lock()
        self._swept_at = 0.0

    def add(self, challenge: Challenge) -> None:
        now = challenge.created_at
        with self._lock:
            if now - self._swept_at > SWEEP_EVERY:
                # Forget expired ones, so the table holds at most the last 5 minutes of ceremonies.
                self._pending = {
                    k: c for k, c in self._pending.items() if now - c.created_at <= CHALLENGE_TTL
                }
                self._swept_at = now
            self._pending[challenge.value] = challenge

    def take(self, value: bytes, kind: str, now: float) -> Challenge | None:
        """Use up the challenge; None when it is unknown, already used, of another kind, or expired."""
        with self._lock:
            challenge = self._pending.pop(value, None)
        if challenge is None or challenge.kind != kind or now - challenge.created_at > CHALLENGE_TTL:
            return None
        return challenge

    def __len__(self) -> int:
        return len(self._pending)
