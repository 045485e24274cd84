"""Passkey sign-in: keyctl against headless Chromium, same reference server, same run.

(1) one-shot: a whole `keyctl login` process (stored virtual authenticator) against starting Debian's
    Chromium through Playwright, giving it the same kind of credential through Chrome's CDP virtual
    authenticator, and logging in once (what a CI job does today). Median wall time of each. Reference
    rows from the same run: the floor of any process built on fido2's client (a Python process that only
    imports fido2.client and httpx, without httpx's command line), and a whole `keyctl register` process
    (its new passkey is deleted through the admin API after each run, outside the timing, to stay under
    the 5-passkey limit; the bench account is the server's --admin-email, stepping up with its TOTP).
(2) throughput: keyctl's in-process logins per second (library: options, authenticator, verify) against
    an already-open Chromium page doing the same login in a loop.

Both sign in to one reference server (`keyctl server`, its own process, loopback) with the same HTTP calls:
POST /api/passkeys/login/options, navigator.credentials.get / keyctl's fido2 client, POST .../verify.
Usage: .venv/bin/python benchmarks/bench_login.py [--runs 7] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
from playwright.sync_api import Page, sync_playwright

EMAIL = "bench@example.com"
PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
_TOTP_SECRET: list[str] = []  # the bench account's, kept in memory for its second sign-in
_LAST_STEP: list[int] = [0]  # the last TOTP step the bench account sent: the server takes each once
_STEP_UP: dict[str, Any] = {}  # the admin step-up token (the bench account is the server's admin)

REGISTER_JS = """async () => {
  const post = (path, body) => fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)}).then(r => r.json());
  const options = await post("/api/passkeys/register/options", {residentKey: "required", name: "Chromium"});
  const credential = await navigator.credentials.create(
      {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  return (await post("/api/passkeys/register/verify", credential.toJSON())).verified;
}"""

LOGIN_JS = """async (email) => {
  const post = (path, body) => fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)}).then(r => r.json());
  const options = await post("/api/passkeys/login/options", {email});
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  return (await post("/api/passkeys/login/verify", credential.toJSON())).verified;
}"""

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "usb",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"the reference server at {url} did not start")


def enroll(session: Any) -> None:
    from keyctl.webauthn import signin

    def code_source(uri: str) -> Callable[[], str]:
        _TOTP_SECRET.append(parse_qs(urlsplit(uri).query)["secret"][0])
        return next_code

    signin.password_sign_in(session, signin.Password(EMAIL, PASSWORD, enroll=code_source), lambda step: None)


def enroll_again(session: Any) -> None:
    """A second password + TOTP sign-in of the enrolled account (for the register runs' cookie jar)."""
    from keyctl.webauthn import signin

    code = next_code()
    signin.password_sign_in(session, signin.Password(EMAIL, PASSWORD, totp=lambda: code), lambda step: None)


def next_code() -> str:
    """A code of the bench account's next unused TOTP step (waiting when the server's window is spent)."""
    totp = pyotp.TOTP(_TOTP_SECRET[0])
    step = max(int(time.time()) // totp.interval, _LAST_STEP[0] + 1)
    while step > int(time.time()) // totp.interval + 1:  # the server takes up to the next step
        time.sleep(1)
    _LAST_STEP[0] = step
    return str(totp.at(step * totp.interval))


def admin_headers(url: str) -> dict[str, str]:
    """The admin token and a step-up of the bench account (the server's --admin-email), renewed after 4
    minutes: deleting a passkey through the admin API needs one at most 5 minutes old."""
    headers = {"Authorization": "Bearer bench-admin-token"}
    if time.time() - _STEP_UP.get("at", 0.0) > 240:
        answer = httpx.post(
            f"{url}/api/admin/step-up/totp", json={"email": EMAIL, "code": next_code()}, headers=headers
        )
        answer.raise_for_status()
        _STEP_UP.update(at=time.time(), token=answer.json()["step_up_token"])
    return {**headers, "Keyctl-Step-Up": _STEP_UP["token"]}


def delete_new_passkeys(url: str, keep: int) -> None:
    """Delete the account's passkeys registered after the first ``keep`` (the register runs' ones)."""
    headers = admin_headers(url)
    users = httpx.get(f"{url}/api/admin/users", headers=headers).json()["users"]
    passkeys = next(user for user in users if user["email"] == EMAIL)["passkeys"]
    for passkey in passkeys[keep + 1 :]:  # the Chromium passkey is the third
        httpx.delete(
            f"{url}/api/admin/users/{EMAIL}/passkeys/{passkey['id']}", headers=headers
        ).raise_for_status()


def browser_page(browser: Any, url: str) -> tuple[Page, Any, str]:
    page = browser.new_page()
    page.goto(url + "/")
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator_id = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})[
        "authenticatorId"
    ]
    return page, cdp, authenticator_id


def chromium_cpu_s(exclude: set[int]) -> tuple[float, set[int]]:
    """CPU seconds (user + system) used so far by the running Chromium processes not in ``exclude``."""
    total, pids = 0.0, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            if not os.readlink(entry / "exe").startswith("/usr/lib/chromium/"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pids.add(int(entry.name))
    return total, pids


def one_shot_browser(playwright: Any, url: str, credential: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Start Chromium, give its virtual authenticator the credential, log in once, stop.
    Returns the credential with its new counter and the CPU seconds Chromium's processes used."""
    _, before = chromium_cpu_s(set())
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        page, cdp, authenticator_id = browser_page(browser, url)
        cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": credential})
        if page.evaluate(LOGIN_JS, EMAIL) is not True:
            raise SystemExit("Chromium's login was not verified")
        # Carry the signature counter over to the next run, as a stored credential would.
        updated = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"][0]
        cpu, _ = chromium_cpu_s(before)
        return dict(updated), cpu
    finally:
        browser.close()
        # Chromium's processes outlive close() by a few hundred ms: let them go before the next run,
        # so that neither side is timed while the other one's processes still use the CPU.
        deadline = time.monotonic() + 10
        while chromium_cpu_s(before)[1] and time.monotonic() < deadline:
            time.sleep(0.02)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="one-shot runs of each side")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput loop")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="keyctl-bench-") as tmp:
        # keyctl's processes read compiled bytecode, as from an installed package: cached under the
        # temporary directory (a PYTHONDONTWRITEBYTECODE environment would compile every edited module
        # again in every run) and written by the warm-up run below.
        env = {
            **{name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPYCACHEPREFIX": f"{tmp}/pycache",
            "KEYCTL_DATA_DIR": f"{tmp}/data",
            "KEYCTL_CONFIG_DIR": f"{tmp}/config",
            "KEYCTL_CACHE_DIR": f"{tmp}/cache",
            "BENCH_ADMIN": "bench-admin-token",
        }
        os.environ.update(env)
        from keyctl.authenticator import VirtualAuthenticator, new_state
        from keyctl.authenticator import store as virtual_store
        from keyctl.authenticator.store import ENV_VIRTUAL_KEY, new_ci_key
        from keyctl.hid import open_device
        from keyctl.hid.inprocess import connect
        from keyctl.webauthn import flows, profile
        from keyctl.webauthn.session import Session

        TimedSession = _timed_session()

        os.environ[ENV_VIRTUAL_KEY] = env[ENV_VIRTUAL_KEY] = new_ci_key()
        port = free_port()
        url = f"http://localhost:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "keyctl", "server", "--port", str(port), "--db", f"{tmp}/rp.sqlite3",
             "--admin-token-env", "BENCH_ADMIN", "--rate-limit", "1000000000", "--admin-email", EMAIL],
            env=env,
        )  # fmt: skip
        try:
            wait_for(url)
            httpx.post(
                f"{url}/api/admin/users",
                json={"email": EMAIL, "password": PASSWORD},
                headers={"Authorization": "Bearer bench-admin-token"},
            ).raise_for_status()
            keyctl_profile = profile.load("keyctl")
            stored = VirtualAuthenticator(new_state())
            virtual_store.create("bench", stored.store.state)  # type: ignore[attr-defined]
            memory = VirtualAuthenticator()

            def client(open_dev: Callable[[], Any], name: str) -> flows.Client:
                return flows.Client(url, name, open_dev, _Quiet())

            with Session(url, keyctl_profile, url) as session:
                enroll(session)
                for opener, name in (
                    (lambda: open_device("virtual:bench"), "virtual:bench"),
                    (lambda: connect(memory), "memory"),
                ):
                    flows.register(session, client(opener, name), flows.Request(user=EMAIL, resident=True))
                cookie = session.cookie("keyctl_session")

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page, cdp, authenticator_id = browser_page(browser, url)
                page.context.add_cookies([{"name": "keyctl_session", "value": cookie or "", "url": url}])
                if page.evaluate(REGISTER_JS) is not True:
                    raise SystemExit("Chromium's registration was not verified")
                credential = dict(
                    cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"][
                        0
                    ]
                )
                page.context.clear_cookies()

                # (1) one-shot, whole process vs whole browser.
                command = [sys.executable, "-m", "keyctl", "login", "--server", url, "--user", EMAIL,
                           "--authenticator", "virtual:bench"]  # fmt: skip
                keyctl_times: list[float] = []
                browser_times: list[float] = []
                version_times: list[float] = []
                keyctl_cpu: list[float] = []
                browser_cpu: list[float] = []
                version = [sys.executable, "-m", "keyctl", "--version"]
                # Without httpx's own command line (httpx._main: click, rich, pygments, ~50 ms CPU), which
                # httpx imports whenever they are installed, and keyctl's entry point skips (as would any
                # program using httpx as its HTTP client).
                floor = [
                    sys.executable,
                    "-c",
                    "import sys; sys.modules['httpx._main'] = None; import fido2.client, httpx",
                ]
                jar = f"{tmp}/register.jar"
                with Session(url, keyctl_profile, url) as signed_in:
                    enroll_again(signed_in)
                    signed_in.save_cookies(Path(jar))
                registering = VirtualAuthenticator(new_state())
                virtual_store.create("bench-reg", registering.store.state)  # type: ignore[attr-defined]
                register = [sys.executable, "-m", "keyctl", "register", "--server", url, "--user", EMAIL,
                            "--cookie-jar", jar, "--device", "virtual:bench-reg",
                            "--no-resident"]  # fmt: skip
                floor_times: list[float] = []
                floor_cpu: list[float] = []
                register_times: list[float] = []
                register_cpu: list[float] = []
                for warm_up in (version, command, floor, register):
                    subprocess.run(warm_up, env=env, check=True, capture_output=True)
                    delete_new_passkeys(url, keep=2)
                for _ in range(args.runs):
                    started = time.perf_counter()
                    subprocess.run(version, env=env, check=True, capture_output=True)
                    version_times.append(time.perf_counter() - started)
                    cpu_before = children_cpu_s()
                    started = time.perf_counter()
                    subprocess.run(floor, env=env, check=True, capture_output=True)
                    floor_times.append(time.perf_counter() - started)
                    floor_cpu.append(children_cpu_s() - cpu_before)
                    cpu_before = children_cpu_s()
                    started = time.perf_counter()
                    subprocess.run(register, env=env, check=True, capture_output=True)
                    register_times.append(time.perf_counter() - started)
                    register_cpu.append(children_cpu_s() - cpu_before)
                    delete_new_passkeys(url, keep=2)
                    cpu_before = children_cpu_s()
                    started = time.perf_counter()
                    subprocess.run(command, env=env, check=True, capture_output=True)
                    keyctl_times.append(time.perf_counter() - started)
                    keyctl_cpu.append(children_cpu_s() - cpu_before)
                    started = time.perf_counter()
                    credential, cpu = one_shot_browser(playwright, url, credential)
                    browser_times.append(time.perf_counter() - started)
                    browser_cpu.append(cpu)

                # (2) throughput: keyctl in-process vs the page that is already open (its authenticator
                # gets the credential with the counter the one-shot runs reached).
                cdp.send("WebAuthn.clearCredentials", {"authenticatorId": authenticator_id})
                cdp.send(
                    "WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": credential}
                )
                with TimedSession(url, keyctl_profile, url) as session:
                    memory_client = client(lambda: connect(memory), "memory")
                    keyctl_rate = rate(
                        lambda: flows.login(session, memory_client, flows.Request(user=EMAIL)).verified,
                        args.seconds,
                    )
                    http_ms = 1000 * session.in_http / session.logins
                browser_rate = rate(lambda: page.evaluate(LOGIN_JS, EMAIL) is True, args.seconds)
                browser.close()
        finally:
            server.terminate()
            server.wait(10)

    one_shot_keyctl, one_shot_browser_ms = median_ms(keyctl_times), median_ms(browser_times)
    print(f"reference server: {url} (own process); {args.runs} one-shot runs each, {args.seconds:g} s loops")
    print(f"load average (1 min): {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"(1) one-shot keyctl login process (virtual:bench): median {one_shot_keyctl:7.0f} ms")
    print(f"    (for scale: a 'keyctl --version' process: median {median_ms(version_times):7.0f} ms)")
    floor_ms, register_ms = median_ms(floor_times), median_ms(register_times)
    print(f"    floor: a process importing fido2.client + httpx (not its CLI): median {floor_ms:7.0f} ms")
    print(f"    keyctl login / floor: {one_shot_keyctl / floor_ms:.2f}x (goal <= 1.3x); CPU time: "
          f"{median_ms(keyctl_cpu):.0f} / {median_ms(floor_cpu):.0f} ms = "
          f"{median_ms(keyctl_cpu) / median_ms(floor_cpu):.2f}x")  # fmt: skip
    print(f"    one-shot keyctl register process: median {register_ms:7.0f} ms, "
          f"{register_ms / floor_ms:.2f}x the floor; CPU time: {median_ms(register_cpu):.0f} ms = "
          f"{median_ms(register_cpu) / median_ms(floor_cpu):.2f}x")  # fmt: skip
    print(f"    headless Chromium start + CDP authenticator + login: median {one_shot_browser_ms:7.0f} ms")
    print(f"    ratio: keyctl is {one_shot_browser_ms / one_shot_keyctl:.1f}x faster (goal >= 5x)")
    cpu_keyctl, cpu_browser = median_ms(keyctl_cpu), median_ms(browser_cpu)
    print(f"    CPU time (user+sys, independent of other load): keyctl {cpu_keyctl:.0f} ms, "
          f"Chromium processes {cpu_browser:.0f} ms: {cpu_browser / cpu_keyctl:.1f}x")  # fmt: skip
    print(f"(2) keyctl in-process logins/s: {keyctl_rate:7.1f}")
    print(f"    (of each keyctl login, {http_ms:.1f} ms are the two round trips to the server)")
    print(f"    already-open Chromium page logins/s: {browser_rate:7.1f}")
    print(f"    ratio: keyctl is {keyctl_rate / browser_rate:.1f}x faster (goal >= 10x)")


def _timed_session() -> type:
    from keyctl.webauthn.session import Session

    class Timed(Session):
        """Counts the time spent waiting on the server (both HTTP calls of each login)."""

        in_http = 0.0
        logins = 0

        def call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return super().call(method, path, *args, **kwargs)
            finally:
                self.in_http += time.perf_counter() - started
                self.logins += path.endswith("/verify")

    return Timed


class _Quiet:
    def touch(self) -> None:
        return None

    def pin(self) -> str | None:
        return None


def rate(login: Callable[[], bool], seconds: float) -> float:
    """Verified logins per second over at least ``seconds`` (after one warm-up login)."""
    if not login():
        raise SystemExit("a login was not verified")
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if not login():
            raise SystemExit("a login was not verified")
        count += 1
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
