"""State that every server process must see the same, kept in the database through the port.

- Ceremony challenges: single use and 5 minutes (``challenges.py``), in a table, so a ceremony begun on
  one instance completes on another. Taking one is a ``DELETE ... RETURNING`` in the unit of work that
  verifies the response (``take_in``; a refusal's record step discards it again after the rollback, so it
  is used up whatever the outcome), or in a transaction of its own (``take``). When the same challenge
  reaches two instances at once, exactly one gets it.
- Per-IP request counts: a sliding one-minute window, one row per counted request, so the limit holds for
  the sum of requests to all instances.

Brute-force counters and blocks (``failures``) and sessions were already rows of the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from keyctl.server.challenges import CHALLENGE_TTL, SWEEP_EVERY, Challenge
from keyctl.server.storage.port import Database, Tx

RATE_WINDOW = 60.0


class ChallengeStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._swept_at = 0.0  # per process: each one sweeps at most once a SWEEP_EVERY

    def add(self, tx: Tx, challenge: Challenge) -> None:
        """Record a challenge within the caller's transaction (the one issuing the options)."""
        now = challenge.created_at
        if now - self._swept_at > SWEEP_EVERY:
            tx.execute("DELETE FROM ceremony_challenges WHERE created_at < ?", (now - CHALLENGE_TTL,))
            self._swept_at = now
        tx.execute(
            "INSERT INTO ceremony_challenges (value, kind, created_at, user_verification, user_id, "
            "username_first, session_hash, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                challenge.value,
                challenge.kind,
                challenge.created_at,
                challenge.user_verification,
                challenge.user_id,
                int(challenge.username_first),
                challenge.session_hash,
                challenge.name,
            ),
        )

    def take(self, value: bytes, kind: str, now: float) -> Challenge | None:
        """Use up the challenge, committed at once; None when it is unknown, already used, of another
        kind, or expired."""
        return self.db.run(lambda tx: self.take_in(tx, value, kind, now))

    def take_in(self, tx: Tx, value: bytes, kind: str, now: float) -> Challenge | None:
        """``take`` within the caller's unit of work: the challenge is used up when it commits."""
        row = tx.one("DELETE FROM ceremony_challenges WHERE value = ? RETURNING *", (value,))
        if row is None or row["kind"] != kind or now - row["created_at"] > CHALLENGE_TTL:
            return None
        return Challenge(
            value=bytes(row["value"]),
            kind=row["kind"],
            created_at=row["created_at"],
            user_verification=row["user_verification"],
            user_id=row["user_id"],
            username_first=bool(row["username_first"]),
            session_hash=row["session_hash"],
            name=row["name"],
        )

    def discard(self, tx: Tx, value: bytes) -> None:
        tx.execute("DELETE FROM ceremony_challenges WHERE value = ?", (value,))

    def pending(self) -> int:
        row = self.db.run(lambda tx: tx.one("SELECT count(*) AS n FROM ceremony_challenges"))
        assert row is not None
        return int(row["n"])


@dataclass(frozen=True)
class RateLimited:
    retry_after: int  # seconds until the oldest counted request leaves the window


class RateCounter:
    def __init__(self, db: Database, limit: int, window: float = RATE_WINDOW) -> None:
        self.db = db
        self.limit = limit
        self.window = window
        self._swept_at = 0.0

    def hit(self, ip: str, now: float) -> RateLimited | None:
        """Count one request from ``ip``; RateLimited (not counted) beyond ``limit`` in the window."""
        start = now - self.window

        def work(tx: Tx) -> RateLimited | None:
            if now - self._swept_at > self.window:
                # Forget every IP's old requests, so the table holds about one window of traffic.
                tx.execute("DELETE FROM rate_hits WHERE at <= ?", (start,))
                self._swept_at = now
            row = tx.one(
                "SELECT count(*) AS n, min(at) AS first FROM rate_hits WHERE ip = ? AND at > ?", (ip, start)
            )
            assert row is not None
            if row["n"] >= self.limit:
                return RateLimited(max(1, math.ceil(row["first"] + self.window - now)))
            tx.execute("INSERT INTO rate_hits (ip, at) VALUES (?, ?)", (ip, now))
            return None

        return self.db.run(work)
