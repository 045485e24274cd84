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
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

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
