"""Shared state through the port, on both adapters, with two Database objects standing for two server
processes: a challenge issued by one is taken by the other, once; the rate limit counts both."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from keyctl.server.challenges import CHALLENGE_TTL, Challenge
from keyctl.server.storage import Database, open_database
from keyctl.server.storage.state import ChallengeStore, RateCounter, RateLimited

NOW = 1_800_000_000.0


@pytest.fixture
def other(target: str, db: Database) -> Iterator[Database]:
    """A second connection to the same database: another server process."""
    second = open_database(target)
    try:
        yield second
    finally:
        second.close()


def _challenge(kind: str = "login", created_at: float = NOW, **fields: object) -> Challenge:
    values: dict[str, object] = {"user_verification": "preferred", "user_id": None, **fields}
    return Challenge(value=os.urandom(32), kind=kind, created_at=created_at, **values)  # type: ignore[arg-type]


def test_a_challenge_issued_by_one_instance_is_taken_by_the_other_exactly_once(
    db: Database, other: Database
) -> None:
    issued = _challenge("register", user_id=7, session_hash="ab" * 32, name="Desk key", username_first=True)
    a, b = ChallengeStore(db), ChallengeStore(other)
    db.run(lambda tx: a.add(tx, issued))
    assert b.take(issued.value, "register", NOW + 1) == issued
    assert a.take(issued.value, "register", NOW + 2) is None
    assert b.take(issued.value, "register", NOW + 2) is None


def test_a_challenge_of_another_kind_or_expired_is_refused_and_used_up(db: Database) -> None:
    store = ChallengeStore(db)
    wrong_kind, expired = _challenge("login"), _challenge("login")
    db.run(lambda tx: (store.add(tx, wrong_kind), store.add(tx, expired)))
    assert store.take(wrong_kind.value, "register", NOW) is None
    assert store.take(wrong_kind.value, "login", NOW) is None  # named once: gone
    assert store.take(expired.value, "login", NOW + CHALLENGE_TTL + 1) is None
    assert store.pending() == 0


def test_expired_challenges_are_swept_when_new_ones_are_issued(db: Database) -> None:
    store = ChallengeStore(db)
    db.run(lambda tx: [store.add(tx, _challenge()) for _ in range(5)])
    fresh = _challenge(created_at=NOW + CHALLENGE_TTL + 61)
    db.run(lambda tx: ChallengeStore(db).add(tx, fresh))  # a process that has not swept yet
    assert ChallengeStore(db).pending() == 1


def test_the_same_challenge_posted_to_two_instances_at_once_is_accepted_once(
    db: Database, other: Database
) -> None:
    """200 challenges, each taken at the same moment by both instances (a barrier per challenge)."""
    stores = ChallengeStore(db), ChallengeStore(other)
    issued = [_challenge() for _ in range(200)]
    db.run(lambda tx: [stores[0].add(tx, c) for c in issued])
    wins = [[0, 0] for _ in issued]
    barrier = threading.Barrier(2)

    def instance(index: int) -> None:
        for number, challenge in enumerate(issued):
            barrier.wait()
            if stores[index].take(challenge.value, "login", NOW) is not None:
                wins[number][index] += 1

    threads = [threading.Thread(target=instance, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(sum(w) == 1 for w in wins), [w for w in wins if sum(w) != 1][:5]
    assert {sum(w[i] for w in wins) for i in (0, 1)} != {0}


def test_the_rate_limit_counts_the_requests_to_both_instances(db: Database, other: Database) -> None:
    a, b = RateCounter(db, limit=10), RateCounter(other, limit=10)
    results = [(a if n % 2 else b).hit("203.0.113.9", NOW + n) for n in range(10)]
    assert results == [None] * 10
    assert a.hit("203.0.113.9", NOW + 10) == RateLimited(retry_after=50)
    assert b.hit("203.0.113.9", NOW + 10) == RateLimited(retry_after=50)
    assert b.hit("198.51.100.1", NOW + 10) is None  # another IP has its own count
    # The window slides: one minute after the first request, one more is allowed, then refused again.
    assert a.hit("203.0.113.9", NOW + 60) is None
    assert b.hit("203.0.113.9", NOW + 60.5) == RateLimited(retry_after=1)


def test_concurrent_requests_from_one_ip_to_two_instances_never_exceed_the_limit(
    db: Database, other: Database
) -> None:
    """For each of 40 IPs, both instances count 4 requests at the same moment against a limit of 5."""
    counters = RateCounter(db, limit=5), RateCounter(other, limit=5)
    ips = [f"203.0.113.{n}" for n in range(40)]
    allowed = {ip: 0 for ip in ips}
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def instance(index: int) -> None:
        for ip in ips:
            barrier.wait()
            for _ in range(4):
                if counters[index].hit(ip, NOW) is None:
                    with lock:
                        allowed[ip] += 1

    threads = [threading.Thread(target=instance, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {ip: n for ip, n in allowed.items() if n != 5} == {}
