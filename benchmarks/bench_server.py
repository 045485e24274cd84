"""Verified passkey logins per second against the reference server, next to two references measured in
the same run: the bare ECDSA P-256 verify rate, and two bare HTTP round trips to the same server.

    .venv/bin/python benchmarks/bench_server.py [--seconds 2.0] [--rounds 5]

The server is `keyctl server` in its own process (loopback, a fresh SQLite database), as a deployment or
benchmarks/bench_login.py runs it; one in-process client keeps a connection open and does, per login, the
two real round trips: POST login options, sign with an ES256 software authenticator
(tests/server/softauth.py), POST the assertion, which the server verifies (signature, rpIdHash, flags,
clientData, challenge, counter; session and audit rows written) before answering. The bare round trips
are two GETs of an unknown path (a 404 from the same app). Server CPU is the server process's user+system
time per login, from /proc (Linux): unlike wall time, it hardly depends on how busy the machine is. Each
figure is the median over the rounds.

Scale-out (issue #18): `--setups sqlite,sqlite-workers2,postgresql,postgresql-2` measures, for each
setup, verified passkey logins/s with `--clients` concurrent client processes (each its own passkey;
options and verify are two requests, to alternating instances where there are two), p50/p99 login
latency, and the CPU per login of the keyctl server processes (workers included) and of PostgreSQL's
processes (a throwaway cluster, tests/postgres.py). The reference measured in the same round: pairs of
bare round trips (a 404) from the same clients to the same setup. Each figure is the median over the
rounds. The clients share the machine's 2 cores with the servers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[1]

EMAIL = "bench@example.com"
PASSWORD = "benchmark passphrase 2026"
ADMIN_TOKEN = "bench-admin-token"


def rate(operation: Callable[[], object], seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        operation()
        count += 1
    return count / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(operation: Callable[[], object], seconds: float, server: int) -> tuple[float, float]:
    """Operations per second, and the server's CPU milliseconds per operation."""
    before = cpu_seconds(server)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        operation()
        count += 1
    elapsed = time.perf_counter() - started
    return count / elapsed, 1000 * (cpu_seconds(server) - before) / count


def serve(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "server", "--port", str(port), "--db", f"{folder}/rp.sqlite3",
         "--admin-token-env", "BENCH_ADMIN", "--rate-limit", "1000000000"],
        env={**os.environ, "BENCH_ADMIN": ADMIN_TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.05)
    server.terminate()
    raise SystemExit(f"the reference server at {url} did not start")


def ecdsa_verify() -> Callable[[], None]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    data = b"authenticator data and client data hash" * 2
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return lambda: public.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def registered_client(url: str, admin_token: str, totp_secret_code: Callable[[str], str]) -> httpx.Client:
    """Sign up through the API (password, TOTP enrollment, recovery code) to register one passkey."""
    http = httpx.Client(base_url=url, verify=False)  # plain http: no CA bundle to load
    http.post(
        "/api/admin/users",
        json={"email": EMAIL, "password": PASSWORD},
        headers={"Authorization": f"Bearer {admin_token}"},
    ).raise_for_status()
    http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD}).raise_for_status()
    secret = http.post("/api/signin/totp/enroll", json={}).json()["secret"]
    shown = http.post("/api/signin/totp/enroll/verify", json={"code": totp_secret_code(secret)})
    http.post("/api/signin/recovery/confirm", json={"recovery_code": shown.json()["recovery_code"]})
    return http


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU time of processes and all their descendants that are still running."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(children.get(pid, []))
    return total


def launch(database: str, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "server", "--port", str(port), "--db-env", "BENCH_DB",
         "--origin", "http://localhost:8443", "--admin-token-env", "BENCH_ADMIN",
         "--rate-limit", "1000000000", *options],
        env={**os.environ, "BENCH_ADMIN": ADMIN_TOKEN, "BENCH_DB": database},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.05)
    server.terminate()
    raise SystemExit(f"the reference server at {url} did not start")


def client_loop(urls: list[str], key: Any, seconds: float, bare: bool, base: int, out: Any) -> None:
    """One client process: logins (or pairs of bare round trips) until ``seconds`` pass; the latencies.
    The sign counter starts at ``base``: a forked client's counter dies with it, the server's does not."""
    for credential in key.credentials.values():
        credential.counter = base
    latencies: list[float] | None = []
    try:
        http = [httpx.Client(base_url=url, verify=False) for url in urls]
        n = 0
        ends = time.perf_counter() + seconds
        while time.perf_counter() < ends:
            first, second = http[n % len(http)], http[(n + 1) % len(http)]
            n += 1
            began = time.perf_counter()
            if bare:
                if (
                    first.get("/bench/nothing").status_code != 404
                    or second.get("/bench/nothing").status_code != 404
                ):
                    raise SystemExit("the bare round trip did not get its 404")
            else:
                options = first.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
                verdict = second.post("/api/passkeys/login/verify", json=key.get(options))
                if verdict.status_code != 200:
                    raise SystemExit(f"login failed: {verdict.text}")
            latencies.append(time.perf_counter() - began)
    except BaseException:
        latencies = None  # tells the parent, which would otherwise wait for this client forever
        raise
    finally:
        out.put(latencies)


def load(
    urls: list[str],
    keys: list[Any],
    seconds: float,
    bare: bool,
    server_pids: list[int],
    db_pids: list[int],
    base: int = 0,
) -> tuple[float, float, float, float, float]:
    """Operations/s, p50 and p99 latency (ms), server and database CPU ms per operation."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    clients = [context.Process(target=client_loop, args=(urls, k, seconds, bare, base, out)) for k in keys]
    server_before, db_before = tree_cpu_seconds(server_pids), tree_cpu_seconds(db_pids)
    began = time.perf_counter()
    for c in clients:
        c.start()
    results = [out.get() for _ in clients]
    if any(r is None for r in results):
        raise SystemExit("a client process failed (its error is above)")
    latencies = sorted(x for r in results for x in r)
    elapsed = time.perf_counter() - began
    for c in clients:
        c.join()
    count = len(latencies)
    return (
        count / elapsed,
        1000 * statistics.median(latencies),
        1000 * latencies[min(count - 1, int(count * 0.99))],
        1000 * (tree_cpu_seconds(server_pids) - server_before) / count,
        1000 * (tree_cpu_seconds(db_pids) - db_before) / count,
    )


def scale(setups: list[str], clients: int, seconds: float, rounds: int) -> None:
    import pyotp

    sys.path.insert(0, str(REPO))
    from tests.postgres import Cluster
    from tests.server.softauth import SoftAuthenticator

    cluster = Cluster() if any(s.startswith("postgresql") for s in setups) else None
    results: dict[str, list[list[float]]] = {}
    try:
        for setup in setups:
            folder = tempfile.mkdtemp()
            db_pids: list[int] = []
            if setup.startswith("postgresql"):
                assert cluster is not None
                database = cluster.database()
                db_pids = [int((cluster.data / "postmaster.pid").read_text().split()[0])]
            else:
                database = f"{folder}/rp.sqlite3"
            options = ("--workers", "2") if setup == "sqlite-workers2" else ()
            instances = [launch(database, *options) for _ in range(2 if setup == "postgresql-2" else 1)]
            try:
                urls = [url for _, url in instances]
                http = registered_client(urls[0], ADMIN_TOKEN, lambda secret: pyotp.TOTP(secret).now())
                keys = []
                for _ in range(clients):
                    key = SoftAuthenticator("http://localhost:8443")
                    created = http.post("/api/passkeys/register/options", json={}).json()
                    http.post("/api/passkeys/register/verify", json=key.create(created)).raise_for_status()
                    keys.append(key)
                pids = [server.pid for server, _ in instances]
                rows = []
                for number in range(rounds):
                    bare = load(urls, keys, seconds, True, pids, db_pids)
                    logins = load(urls, keys, seconds, False, pids, db_pids, base=(number + 1) * 10_000_000)
                    rows.append([*logins, bare[0]])
                results[setup] = [list(column) for column in zip(*rows, strict=True)]
            finally:
                for server, _ in instances:
                    server.terminate()
                    server.wait(20)
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{clients} client processes, {rounds} rounds x {seconds:.1f} s (medians); load average "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    print("setup            logins/s   p50 ms   p99 ms  keyctl CPU ms/login  PostgreSQL CPU ms/login  "
          "bare pairs/s  logins/bare")  # fmt: skip
    for setup, columns in results.items():
        rate, p50, p99, cpu, db_cpu, bare = (statistics.median(c) for c in columns)
        print(f"{setup:16} {rate:9.1f} {p50:8.1f} {p99:8.1f} {cpu:20.2f} {db_cpu:24.2f} {bare:13.1f} "
              f"{rate / bare:12.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--setups", help="scale-out mode: comma-separated setups (see the docstring)")
    parser.add_argument("--clients", type=int, default=4, help="scale-out mode: client processes (1-4)")
    args = parser.parse_args()
    if args.setups:
        scale(args.setups.split(","), min(args.clients, 4), args.seconds, args.rounds)
        return

    import pyotp

    sys.path.insert(0, str(REPO))  # the tests' software authenticator
    from tests.server.softauth import SoftAuthenticator

    with tempfile.TemporaryDirectory() as folder:
        server, url = serve(folder)
        try:
            http = registered_client(url, ADMIN_TOKEN, lambda secret: pyotp.TOTP(secret).now())
            key = SoftAuthenticator(url)
            options = http.post("/api/passkeys/register/options", json={}).json()
            http.post("/api/passkeys/register/verify", json=key.create(options)).raise_for_status()
            client = httpx.Client(base_url=url, verify=False)

            def login() -> None:
                request = client.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
                verdict = client.post("/api/passkeys/login/verify", json=key.get(request))
                if verdict.status_code != 200 or verdict.json()["verified"] is not True:
                    raise SystemExit(f"login failed: {verdict.text}")

            def bare_round_trips() -> None:
                for _ in range(2):
                    if client.get("/bench/nothing").status_code != 404:
                        raise SystemExit("the bare round trip did not get its 404")

            sign_key = ec.generate_private_key(ec.SECP256R1())
            verify = ecdsa_verify()
            verifies, signs, logins, bares = [], [], [], []
            for _ in range(args.rounds):
                verifies.append(rate(verify, args.seconds))
                signs.append(rate(lambda: sign_key.sign(b"x" * 69, ec.ECDSA(hashes.SHA256())), args.seconds))
                logins.append(measure(login, args.seconds, server.pid))
                bares.append(measure(bare_round_trips, args.seconds, server.pid))
        finally:
            server.terminate()
            server.wait(10)

    verify_rate, sign_rate = statistics.median(verifies), statistics.median(signs)
    login_rate, login_cpu = (statistics.median(v) for v in zip(*logins, strict=True))
    bare_rate, bare_cpu = (statistics.median(v) for v in zip(*bares, strict=True))
    print(f"rounds: {args.rounds} x {args.seconds:.1f} s (medians); load average {os.getloadavg()[0]:.1f}")
    print(f"bare ECDSA P-256 verify (cryptography):     {verify_rate:10.0f} /s")
    print(f"bare ECDSA P-256 sign (client side, each):  {sign_rate:10.0f} /s")
    print(f"two bare round trips (404) over loopback:   {bare_rate:10.1f} /s  {1000 / bare_rate:6.2f} ms")
    print(f"verified passkey logins over loopback:      {login_rate:10.1f} /s  {1000 / login_rate:6.2f} ms")
    print(f"server CPU per login / per two bare trips:  {login_cpu:10.2f} ms  {bare_cpu:6.2f} ms")
    print(f"ratio logins / bare verifies:               {login_rate / verify_rate:10.4f}")
    print(f"one login costs as much as {verify_rate / login_rate:.0f} bare verifies")
    print(f"one login costs as much as {bare_rate / login_rate:.1f} pairs of bare round trips")


if __name__ == "__main__":
    main()
