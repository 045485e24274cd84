"""A ceremony challenge waiting for its response: single use, 5 minutes. Kept in the database
(``storage/state.py``), so any server process can complete a ceremony another one began; a challenge is
used up the moment a response names it, whatever the outcome, so a failed verify cannot be retried and two
concurrent verifies (on one instance or two) cannot both use it.
"""

from __future__ import annotations

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
