"""Two real ``keyctl server`` processes on one PostgreSQL database form one service, as two instances
behind a load balancer would (one public origin, two local ports): a ceremony begun on one completes on
the other, a challenge posted to both at once is accepted once, the rate limit and the brute-force block
count the requests to both, and a ``kill -9`` of one loses no acknowledged write while the other serves on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from tests.postgres import Cluster
from tests.server.conftest import EMAIL, PASSWORD, error_of, http_client, totp_code
from tests.server.softauth import SoftAuthenticator

ORIGIN = "http://localhost:8443"  # the load balancer's origin; the instances listen elsewhere
TOKEN = "instances-admin-token"


@dataclass
class Instance:
    process: subprocess.Popen[str]
    url: str  # where this instance listens

    def admin(self) -> httpx.Client:
        return http_client(self.url, headers={"Authorization": f"Bearer {TOKEN}"})


def launch(database: str, *options: str) -> Instance:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "keyctl", "server", "--port", "0", "--origin", ORIGIN),
            *("--db-env", "RP_DB", "--admin-token-env", "RP_ADMIN", *options),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RP_DB": database, "RP_ADMIN": TOKEN},
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith(f"keyctl server: {ORIGIN} "), first
    assert "postgresql://" in first
    assert "listening on " in first
    return Instance(process, first.split("listening on ")[1].split(",")[0])


@pytest.fixture
def database(pg_cluster: Cluster) -> str:
    return pg_cluster.database()


@pytest.fixture
def pair(database: str, request: pytest.FixtureRequest) -> Iterator[tuple[Instance, Instance]]:
    options: tuple[str, ...] = getattr(request, "param", ())
    a = launch(database, *options)
    b = launch(database, *options)
    try:
        yield a, b
    finally:
        for instance in (a, b):
            instance.process.kill()
            instance.process.wait(timeout=20)


def _enroll(on: Instance, http: httpx.Client) -> None:
    """An account with TOTP, signed in on ``http`` (cookie in its jar), all through one instance."""
    with on.admin() as admin:
        assert admin.post("/api/admin/users", json={"email": EMAIL, "password": PASSWORD}).status_code == 201
    step = http.post(f"{on.url}/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
    assert step.json() == {"status": "totp_enrollment_required"}, step.text
    secret = http.post(f"{on.url}/api/signin/totp/enroll", json={}).json()["secret"]
    verified = http.post(
        f"{on.url}/api/signin/totp/enroll/verify", json={"code": totp_code(secret, time.time())}
    )
    recovery = verified.json()["recovery_code"]
    done = http.post(f"{on.url}/api/signin/recovery/confirm", json={"recovery_code": recovery})
    assert done.status_code == 200, done.text


def test_a_registration_begun_on_one_instance_completes_on_the_other(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    key = SoftAuthenticator(ORIGIN)
    with http_client() as http:
        _enroll(a, http)
        options = http.post(f"{a.url}/api/passkeys/register/options", json={"name": "Desk key"})
        assert options.status_code == 200, options.text
        verified = http.post(f"{b.url}/api/passkeys/register/verify", json=key.create(options.json()))
        assert verified.status_code == 200, verified.text
        listed = http.get(f"{a.url}/api/passkeys").json()["passkeys"]
    assert [p["name"] for p in listed] == ["Desk key"]


def test_login_options_from_one_instance_verify_on_the_other_and_a_challenge_is_accepted_once(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    key = SoftAuthenticator(ORIGIN)
    with http_client() as http:
        _enroll(a, http)
        options = http.post(f"{a.url}/api/passkeys/register/options", json={}).json()
        assert http.post(f"{a.url}/api/passkeys/register/verify", json=key.create(options)).status_code == 200
    with http_client() as fresh:
        options = fresh.post(f"{a.url}/api/passkeys/login/options", json={"email": EMAIL}).json()
        signed_in = fresh.post(f"{b.url}/api/passkeys/login/verify", json=key.get(options))
        assert signed_in.status_code == 200, signed_in.text
        assert fresh.get(f"{a.url}/api/me").json()["email"] == EMAIL  # B's session is A's too

    # The same response posted to both at once, ten times: one sign-in each time, the other is refused.
    clients = [http_client(), http_client()]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            options = clients[0].post(f"{a.url}/api/passkeys/login/options", json={}).json()
            response = key.get(options)
            barrier = threading.Barrier(2)

            def post(
                pair_index: int, response: dict[str, object] = response, barrier: threading.Barrier = barrier
            ) -> httpx.Response:
                target = (a, b)[pair_index]
                barrier.wait()
                return clients[pair_index].post(f"{target.url}/api/passkeys/login/verify", json=response)

            answers = list(pool.map(post, (0, 1)))
            assert sorted(r.status_code for r in answers) == [200, 401], [r.text for r in answers]
            assert [error_of(r) for r in answers if r.status_code == 401] == ["session_expired"]
    for c in clients:
        c.close()


@pytest.mark.parametrize("pair", [("--rate-limit", "10")], indirect=True)
def test_the_rate_limit_counts_the_requests_to_both_instances(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    with http_client() as http:
        codes = [
            http.post(f"{(a, b)[n % 2].url}/api/passkeys/login/options", json={}).status_code
            for n in range(14)
        ]
    assert codes == [200] * 10 + [429] * 4


def test_the_brute_force_block_counts_the_failures_on_both_instances(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    with a.admin() as admin:
        assert admin.post("/api/admin/users", json={"email": EMAIL, "password": PASSWORD}).status_code == 201
    wrong = {"email": EMAIL, "password": "not the password at all"}
    with http_client() as http:
        answers = [http.post(f"{(a, b)[n % 2].url}/api/signin/password", json=wrong) for n in range(5)]
        assert [error_of(r) for r in answers] == ["invalid_credentials"] * 5
        for instance in (a, b):  # the fifth failure blocked the account from this address on both
            right = http.post(
                f"{instance.url}/api/signin/password", json={"email": EMAIL, "password": PASSWORD}
            )
            assert error_of(right) == "blocked"
    with b.admin() as admin:
        blocks = admin.get("/api/admin/blocks").json()
    assert [blk["email"] for blk in blocks["blocks"]] == [EMAIL]


def test_kill_9_of_one_instance_under_load_loses_no_acknowledged_write(
    pair: tuple[Instance, Instance], database: str
) -> None:
    """Four threads create accounts on A and B in turn; once 40 are acknowledged, the thread that next
    gets an acknowledgement from A kills A at once (microseconds after it, while the other threads'
    requests are in flight), so a write acknowledged before its commit would be lost: that last one
    above all. B keeps serving; every acknowledged account is in the database."""
    a, b = pair
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    killed = threading.Event()
    last_from_a: list[str] = []  # the acknowledgement that triggered the kill

    def load(worker: int) -> None:
        with a.admin() as to_a, b.admin() as to_b:
            for n in range(400):
                if stop.is_set():
                    return
                email = f"w{worker}-{n}@example.com"
                target = (to_a, to_b)[n % 2]
                try:
                    answer = target.post("/api/admin/users", json={"email": email, "password": PASSWORD})
                except httpx.TransportError:
                    continue  # the killed instance: not acknowledged
                if answer.status_code != 201:
                    continue
                with lock:
                    acknowledged.append(email)
                    if target is to_a and len(acknowledged) >= 40 and not killed.is_set():
                        a.process.send_signal(signal.SIGKILL)  # right after A's acknowledgement
                        killed.set()
                        last_from_a.append(email)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    assert killed.wait(timeout=120)
    a.process.wait(timeout=20)
    with lock:
        before = len(acknowledged)
    while len(acknowledged) < before + 20:  # B keeps serving
        threading.Event().wait(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    with psycopg.connect(database) as check:
        stored = {row[0] for row in check.execute("SELECT email FROM users")}
    assert last_from_a[0] in stored
    assert set(acknowledged) <= stored
    with b.admin() as admin:
        assert (
            admin.post(
                "/api/admin/users", json={"email": "after@example.com", "password": PASSWORD}
            ).status_code
            == 201
        )
