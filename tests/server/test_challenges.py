"""Ceremony challenges, in the database (storage/state.py) on both backends: single use (also for threads
released together on one challenge), expiry, kind, the sweep of expired ones, a restart that keeps the
ceremonies in flight, four verifies of one assertion released together on two instances of the server,
and the old challenges table dropped from existing databases."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from keyctl.server import ServerHandle, start
from keyctl.server.challenges import CHALLENGE_TTL, SWEEP_EVERY, Challenge
from keyctl.server.storage import open_database
from keyctl.server.storage.state import ChallengeStore
from tests.server.conftest import EMAIL, FakeClock, client, enroll, error_of, http_client, register, sql
from tests.server.softauth import SoftAuthenticator


@pytest.fixture
def pending(db_target: Path | str) -> Iterator[ChallengeStore]:
    db = open_database(db_target)
    try:
        yield ChallengeStore(db)
    finally:
        db.close()


def _add(pending: ChallengeStore, *challenges: Challenge) -> None:
    pending.db.run(lambda tx: [pending.add(tx, c) for c in challenges])


def _challenge(kind: str = "login", at: float = 1000.0) -> Challenge:
    return Challenge(value=os.urandom(32), kind=kind, created_at=at, user_verification="preferred", user_id=1)


def test_a_challenge_is_taken_once(pending: ChallengeStore) -> None:
    challenge = _challenge()
    _add(pending, challenge)
    assert pending.take(challenge.value, "login", 1001.0) == challenge
    assert pending.take(challenge.value, "login", 1001.0) is None


def test_threads_taking_one_challenge_at_once_get_it_once(pending: ChallengeStore) -> None:
    """Eight threads released together on one challenge, 20 times: exactly one wins each time."""
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            challenge = _challenge()
            _add(pending, challenge)
            start = threading.Barrier(8)

            def take(_: int, value: bytes = challenge.value, start: threading.Barrier = start) -> bool:
                start.wait()
                return pending.take(value, "login", 1001.0) is not None

            assert sum(pool.map(take, range(8))) == 1


def test_expired_and_other_kinds_are_refused_and_used_up(pending: ChallengeStore) -> None:
    old, registration = _challenge(), _challenge("register")
    _add(pending, old, registration)
    assert pending.take(old.value, "login", 1000.0 + CHALLENGE_TTL + 1) is None
    assert pending.take(registration.value, "login", 1001.0) is None
    assert pending.take(registration.value, "register", 1001.0) is None  # naming it used it up
    assert pending.take(os.urandom(32), "login", 1001.0) is None
    assert pending.pending() == 0


def test_expired_challenges_are_swept(pending: ChallengeStore) -> None:
    _add(pending, *(_challenge(at=1000.0) for _ in range(50)))
    fresh = _challenge(at=1000.0 + CHALLENGE_TTL - 1)
    _add(pending, fresh)
    assert pending.pending() == 51  # nothing expired yet (the first add swept an empty table)
    late = _challenge(at=1000.0 + CHALLENGE_TTL + SWEEP_EVERY + 1)
    _add(pending, late)
    assert pending.pending() == 2  # the 50 expired ones are gone; the fresh one is still within its 5 minutes
    assert pending.take(fresh.value, "login", fresh.created_at + 10) == fresh


def test_a_ceremony_begun_before_a_restart_completes_after_it(
    db_target: Path | str, clock: FakeClock
) -> None:
    """The challenge is in the database: a restart (or another instance) completes the ceremony, once."""
    db = db_target
    key = SoftAuthenticator("")
    with start(db, clock=clock, rate_limit=100_000) as first:
        key.origin = first.url
        register(enroll(first, clock).http, key)
        options = client(first).post("/api/passkeys/login/options", json={"email": EMAIL}).json()
    with start(db, clock=clock, rate_limit=100_000) as second:
        key.origin = second.url  # the origin is the new server's (a new port), the challenge the old one's
        response = key.get(options)
        assert client(second).post("/api/passkeys/login/verify", json=response).status_code == 200
        assert error_of(client(second).post("/api/passkeys/login/verify", json=response)) == "session_expired"
        http = client(second)
        fresh = http.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
        assert http.post("/api/passkeys/login/verify", json=key.get(fresh)).status_code == 200


def test_concurrent_verifies_of_one_assertion_on_two_instances_sign_in_once(
    server: ServerHandle, db_target: Path | str, clock: FakeClock
) -> None:
    """One assertion posted four times at once, two to each of two server instances on one database, in
    five rounds: one sign-in a round, the other three 'Session expired'. Each instance answers on its own
    thread and connection, so two verifies really run at the same time (one server alone answers the
    four one after another, and a look-up and removal of the challenge in separate transactions would
    pass; with a gap between them, this test fails)."""
    key = SoftAuthenticator(server.url)
    register(enroll(server, clock).http, key)
    rounds = 5
    with (
        start(db_target, clock=clock, rate_limit=100_000, origin=server.url) as other,
        ThreadPoolExecutor(4) as pool,
    ):
        for _ in range(rounds):
            clients = [http_client(url) for url in (server.local_url, other.local_url) * 2]
            for http in clients:  # each on its own open connection, so the four requests leave together
                assert http.get("/api/me").status_code == 401
            options = clients[0].post("/api/passkeys/login/options", json={"email": EMAIL}).json()
            response = key.get(options)
            together = threading.Barrier(4)

            def verify(
                http: httpx.Client,
                response: dict[str, object] = response,
                together: threading.Barrier = together,
            ) -> httpx.Response:
                together.wait()
                return http.post("/api/passkeys/login/verify", json=response)

            answers = list(pool.map(verify, clients))
            for http in clients:
                http.close()
            assert sorted(r.status_code for r in answers) == [200, 401, 401, 401], [r.text for r in answers]
            assert all(error_of(r) == "session_expired" for r in answers if r.status_code != 200)
    details = [row[0] for row in sql(server, "SELECT detail FROM audit WHERE event = 'signin_ok'")]
    assert sum(json.loads(detail).get("method") == "passkey" for detail in details) == rounds


def test_a_database_from_before_loses_its_challenges_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE challenges (challenge TEXT PRIMARY KEY, created_at REAL)")
        db.execute("INSERT INTO challenges VALUES ('stale', 0)")
    open_database(path).close()
    with closing(sqlite3.connect(path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "challenges" not in tables
    assert {"users", "passkeys", "sessions", "audit"} <= tables
