"""`keyctl virtual attach` against a real kernel: these tests run INSIDE the QEMU guest.

tests/vm/test_uhid_vm.py boots the guest once and runs this file there with pytest (no conftest: the
guest has no Secret Service; virtual authenticators use CI mode, $KEYCTL_VIRTUAL_KEY). The guest is
root on a read-only view of the host's filesystem with its own kernel, /dev/uhid and a writable /tmp.
Clients: python-fido2's Linux hidraw backend, keyctl's own usb path, libfido2's tools (fido2-tools) and
a `keyctl server` process. The file name keeps the host's pytest from collecting it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = "4682"  # a throwaway key in a throwaway guest
ATTACH_WAIT_S = 60.0  # software emulation: a keyctl process takes seconds to start
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def nobody_env() -> dict[str, str]:
    """Directories the unprivileged user may write (the module's home belongs to root)."""
    base = Path("/tmp/nobody")
    base.mkdir(mode=0o777, exist_ok=True)
    base.chmod(0o777)
    return {
        "HOME": str(base),
        **{f"KEYCTL_{kind}_DIR": str(base / kind.lower()) for kind in ("DATA", "CONFIG", "CACHE")},
    }


def keyctl(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "keyctl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def tool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A libfido2 tool; PINs go to stdin (no controlling terminal: readpassphrase falls back to it)."""
    return subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=120, start_new_session=True
    )


def hidraw_of(name: str) -> Path | None:
    """The /dev/hidrawN whose HID device carries ``name`` as its serial (HID_UNIQ), from sysfs."""
    for node in Path("/sys/class/hidraw").glob("hidraw*"):
        uevent = (node / "device" / "uevent").read_text()
        if f"HID_UNIQ={name}\n" in uevent:
            return Path("/dev") / node.name
    return None


@dataclass
class Attached:
    name: str
    process: subprocess.Popen[str]
    path: Path

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=60)
        return self.process.returncode, err


def attach(name: str, *options: str) -> Attached:
    process = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "virtual", "attach", name, *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + ATTACH_WAIT_S
    while time.monotonic() < deadline:
        path = hidraw_of(name)
        if path is not None and path.exists():
            return Attached(name, process, path)
        if process.poll() is not None:
            raise AssertionError(f"attach {name} exited {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"no hidraw node for {name} within {ATTACH_WAIT_S:g} s")


def aaguid(name: str) -> str:
    from keyctl.authenticator import store

    return str(uuid.UUID(bytes=store.FileStore(name).load().aaguid))


def gone(name: str, wait_s: float = 10.0) -> bool:
    deadline = time.monotonic() + wait_s
    while hidraw_of(name) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("home")
    base.chmod(0o755)
    saved = dict(os.environ)
    os.environ.update(
        HOME=str(base),
        KEYCTL_DATA_DIR=str(base / "data"),
        KEYCTL_CONFIG_DIR=str(base / "config"),
        KEYCTL_CACHE_DIR=str(base / "cache"),
        NO_COLOR="1",
        COLUMNS="200",
    )
    from keyctl.authenticator import AttestationMode, new_state, store

    os.environ["KEYCTL_VIRTUAL_KEY"] = store.new_ci_key()
    for name, attestation in (
        ("k1", AttestationMode.X5C),
        ("k2", AttestationMode.NONE),
        ("k3", AttestationMode.NONE),
    ):
        store.create(
            name, new_state(attestation_mode=attestation)
        )  # in-process: a process costs seconds here
    yield base
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def key1(home: Path) -> Iterator[Attached]:
    attached = attach("k1")
    yield attached
    code, err = attached.stop()
    assert code == 0, err


def test_the_kernel_shows_a_fido_hid_device(key1: Attached) -> None:
    sysfs = Path("/sys/class/hidraw") / key1.path.name / "device"
    uevent = (sysfs / "uevent").read_text()
    assert "HID_ID=0003:00001209:00004B43\n" in uevent  # USB bus, keyctl's pid.codes ids
    assert "HID_NAME=keyctl virtual authenticator k1\n" in uevent
    descriptor = (sysfs / "report_descriptor").read_bytes()
    assert descriptor.startswith(bytes.fromhex("06d0f1"))  # usage page FIDO Alliance


def test_python_fido2_hidraw_backend_finds_it(key1: Attached) -> None:
    from fido2.hid import list_devices

    found = {d.descriptor.path: d.descriptor for d in list_devices()}
    descriptor = found[str(key1.path)]  # python-fido2 parsed the report descriptor itself
    assert (descriptor.vid, descriptor.pid) == (0x1209, 0x4B43)
    assert (descriptor.report_size_in, descriptor.report_size_out) == (64, 64)
    assert descriptor.product_name == "keyctl virtual authenticator k1"


def test_keyctl_key_info_over_usb_is_the_stored_authenticator(key1: Attached) -> None:
    info = keyctl("key", "info", "--device", "usb", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["aaguid"] == aaguid("k1")


def test_libfido2_lists_and_describes_it(key1: Attached) -> None:
    listed = tool("fido2-token", "-L")
    assert listed.returncode == 0, listed.stderr
    # (libfido2 reads the product name from a USB parent in sysfs, which a uhid device does not have)
    assert re.search(rf"^{key1.path}: vendor=0x1209, product=0x4b43 ", listed.stdout, re.M), listed.stdout
    info = tool("fido2-token", "-I", str(key1.path))
    assert info.returncode == 0, info.stderr
    assert f"aaguid: {aaguid('k1').replace('-', '')}" in info.stdout
    assert "clientPin" not in info.stdout.split("options:")[1].split("\n")[0].replace("noclientPin", "")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cred_input(tmp: Path) -> Path:
    """fido2-cred -M's input: client data hash, RP id, user name, user id."""
    cred_in = tmp / "cred.in"
    cdh, user_id = _b64(hashlib.sha256(b"cdh-make").digest()), _b64(os.urandom(16))
    cred_in.write_text(f"{cdh}\nfido.example\nalice\n{user_id}\n")
    return cred_in


def _make_and_verify(
    device: Path, tmp: Path, *flags: str, resident: bool = False, pin: str | None = None
) -> bytes:
    """fido2-cred -M then -V (attestation checked by libfido2), fido2-assert -G then -V; the credential id."""
    cred_in = cred_input(tmp)
    pin_input = f"{pin}\n" if pin else None
    make_flags = [*flags, "-r"] if resident else list(flags)
    made = tool("fido2-cred", "-M", *make_flags, "-i", str(cred_in), "-o", str(tmp / "cred.out"), str(device),
                "es256", stdin=pin_input)  # fmt: skip
    assert made.returncode == 0, made.stderr
    verified = tool(
        "fido2-cred", "-V", *flags, "-i", str(tmp / "cred.out"), "-o", str(tmp / "pub.pem"), "es256"
    )
    assert verified.returncode == 0, verified.stderr
    credential_id = (tmp / "cred.out").read_text().splitlines()[4]
    assert_in = tmp / "assert.in"
    assert_in.write_text(
        "\n".join((_b64(hashlib.sha256(b"cdh-get").digest()), "fido.example", credential_id)) + "\n"
    )
    got = tool("fido2-assert", "-G", *flags, "-i", str(assert_in), "-o", str(tmp / "assert.out"), str(device),
               stdin=pin_input)  # fmt: skip
    assert got.returncode == 0, got.stderr
    checked = tool("fido2-assert", "-V", *flags, "-i", str(tmp / "assert.out"), str(tmp / "pub.pem"), "es256")
    assert checked.returncode == 0, checked.stderr
    return base64.b64decode(credential_id)


def test_libfido2_makes_a_credential_and_an_assertion_it_verifies(key1: Attached, tmp_path: Path) -> None:
    _make_and_verify(key1.path, tmp_path)
    forged = tmp_path / "assert.out"
    lines = forged.read_text().splitlines()
    lines[1] = "other.example"  # an assertion for another RP must not verify: -V really checks
    forged.write_text("\n".join(lines) + "\n")
    refused = tool("fido2-assert", "-V", "-i", str(forged), str(tmp_path / "pub.pem"), "es256")
    assert refused.returncode != 0


def test_two_attached_authenticators_are_two_keys_and_leave_cleanly(key1: Attached) -> None:
    key2 = attach("k2", "--product-id", "0x4b44")
    try:
        listed = tool("fido2-token", "-L").stdout
        assert str(key1.path) in listed
        assert str(key2.path) in listed
        assert "product=0x4b44" in listed
    finally:
        code, err = key2.stop(signal.SIGTERM)
    assert code == 0, err
    assert "detached" in err
    assert gone("k2")
    key3 = attach("k3")
    key3.process.kill()  # kill -9: the kernel removes the device when the descriptor closes
    key3.process.wait(30)
    assert gone("k3")
    assert hidraw_of("k1") == key1.path


def test_power_cycle_reaches_the_attached_key(key1: Attached) -> None:
    cycled = keyctl("virtual", "power-cycle", "k1")
    assert cycled.returncode == 0, cycled.stderr
    assert f"pid {key1.process.pid}" in cycled.stderr + cycled.stdout
    assert hidraw_of("k1") == key1.path  # still attached


def test_the_prompt_policy_asks_on_the_terminal_of_attach(key1: Attached, tmp_path: Path) -> None:
    from keyctl.authenticator import AttestationMode, PresenceMode, new_state, store

    # (with "none" attestation fido2-cred -M has no signature to print and fails with "output error")
    store.create("k4", new_state(presence=PresenceMode.PROMPT, attestation_mode=AttestationMode.X5C))
    master, terminal = pty.openpty()
    command = [sys.executable, "-m", "keyctl", "virtual", "attach", "k4"]
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True
    )
    os.close(terminal)
    seen = bytearray()

    def wait_for(text: bytes, count: int = 1) -> None:
        deadline = time.monotonic() + ATTACH_WAIT_S
        while seen.count(text) < count:
            assert time.monotonic() < deadline, bytes(seen)
            if select.select([master], [], [], 0.5)[0]:
                seen.extend(os.read(master, 4096))

    def make_credential() -> subprocess.Popen[str]:
        path = hidraw_of("k4")
        assert path is not None
        args = ["-M", "-i", str(cred_input(tmp_path)), "-o", str(tmp_path / "out"), str(path), "es256"]
        return subprocess.Popen(
            ["fido2-cred", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    try:
        wait_for(b"attached virtual:k4")
        approved = make_credential()
        wait_for(b"Touch the virtual key to")
        os.write(master, b"y\n")
        assert approved.wait(60) == 0, approved.communicate()[1]
        refused = make_credential()
        wait_for(b"Touch the virtual key to", count=2)
        os.write(master, b"n\n")
        _, err = refused.communicate(timeout=60)
        assert refused.returncode != 0
        assert "FIDO_ERR_OPERATION_DENIED" in err
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        os.close(master)
    assert gone("k4")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    """`keyctl server` as its own process on a loopback port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = home / "rp.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "server", "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "keyctl server did not listen within 120 s"
            time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)


def test_register_and_login_with_usb_against_keyctl_server(key1: Attached, server: str, home: Path) -> None:
    from keyctl.webauthn import profile, signin
    from keyctl.webauthn.session import Session

    password = "correct horse battery staple"
    added = keyctl("server", "user", "add", "uma@example.com", "--db", str(home / "rp.sqlite3"),
                   "--password-env", "PW", env={"PW": password})  # fmt: skip
    assert added.returncode == 0, added.stderr

    def enroll(uri: str) -> signin.CodeSource:
        secret = parse_qs(urlsplit(uri).query)["secret"][0]
        return lambda: tool("oathtool", "--totp", "-b", secret).stdout.strip()

    jar = home / "jar.txt"
    with Session(server, profile.load("keyctl"), server) as session:
        signin.password_sign_in(session, signin.Password("uma@example.com", password, enroll=enroll), print)
        session.save_cookies(jar)
    registered = keyctl("register", "--server", server, "--user", "uma@example.com", "--cookie-jar", str(jar),
                        "--authenticator", "usb", "--resident", "--json")  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    logged_in = keyctl("login", "--server", server, "--authenticator", "usb", "--json")
    assert logged_in.returncode == 0, logged_in.stderr
    answer = json.loads(logged_in.stdout)
    assert (answer["user"], answer["authenticator"], answer["server"]["method"]) == (
        "uma@example.com",
        "usb",
        "passkey",
    )


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def test_chromium_registers_and_signs_in_with_the_attached_key(
    key1: Attached, server: str, home: Path
) -> None:
    """Debian's Chromium, no CDP virtual authenticator: it finds the key through the kernel like any USB key.
    Before the PIN test: with a PIN set, Chromium would ask for it in UI that headless mode does not have."""
    from playwright.sync_api import expect, sync_playwright

    email, password = "bea@example.com", "correct horse battery staple"
    added = keyctl("server", "user", "add", email, "--db", str(home / "rp.sqlite3"), "--password-env", "PW",
                   env={"PW": password})  # fmt: skip
    assert added.returncode == 0, added.stderr
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(180_000)  # software emulation
            expect.set_options(timeout=180_000)
            page.goto(server)
            page.fill("#email", email)
            page.fill("#password", password)
            page.click("#signin-btn")
            expect(page.locator("#enroll")).to_be_visible()
            secret = page.inner_text("#enroll-secret")
            page.fill("#enroll-code", tool("oathtool", "--totp", "-b", secret).stdout.strip())
            page.click("#enroll-btn")
            expect(page.locator("#recovery")).to_be_visible()
            page.fill("#recovery-confirm", page.inner_text("#recovery-shown"))
            page.click("#recovery-confirm-btn")
            expect(page.locator("#whoami")).to_have_text(email)
            page.fill("#register-name", "attached key")
            page.click("#register-btn")
            expect(page.locator("#message")).to_have_text('Passkey "attached key" registered')
            page.click("#logout-btn")
            expect(page.locator("#message")).to_have_text("Logged out")
            page.fill("#email", email)  # username-first: the key also holds uma's passkey for localhost
            with page.expect_response("**/api/passkeys/login/verify") as verified:
                page.click("#passkey-btn")
            assert verified.value.status == 200, verified.value.text()
            expect(page.locator("#message")).to_have_text("Signed in with a passkey")
            expect(page.locator("#whoami")).to_have_text(email)
        finally:
            browser.close()
    # The passkey Chromium registered is on the attached key, not in the browser.
    from keyctl.authenticator import store

    assert email in [c.user_name for c in store.FileStore("k1").load().credentials]


def test_a_pin_set_by_libfido2_guards_both_clients(key1: Attached, tmp_path: Path) -> None:
    set_pin = tool("fido2-token", "-S", str(key1.path), stdin=f"{PIN}\n{PIN}\n")
    assert set_pin.returncode == 0, set_pin.stderr
    options = tool("fido2-token", "-I", str(key1.path)).stdout
    assert re.search(r"options:.*\bclientPin\b", options)
    assert "noclientPin" not in options
    # libfido2 with the PIN: a user-verified credential and assertion (-v), checked by -V -v.
    _make_and_verify(key1.path, tmp_path, "-v", resident=True, pin=PIN)
    # keyctl with the same PIN (its own PIN protocol code) sees the passkeys both clients made.
    listed = keyctl("key", "creds", "list", "--device", "usb", "--pin-env", "PIN", "--json", env={"PIN": PIN})
    assert listed.returncode == 0, listed.stderr
    rps = sorted(c["rp_id"] for c in json.loads(listed.stdout))
    assert rps == ["fido.example", "localhost", "localhost"]  # libfido2's, keyctl register's, Chromium's
    wrong = keyctl("key", "creds", "list", "--device", "usb", "--pin-env", "PIN", env={"PIN": "9999"})
    assert wrong.returncode == 15, wrong.stderr  # "We could not verify you"


def test_attach_refuses_a_user_who_may_not_open_dev_uhid(home: Path) -> None:
    result = keyctl("virtual", "attach", "k2", user=NOBODY, env=nobody_env())
    assert result.returncode == 16, result.stderr
    assert "may not open /dev/uhid" in result.stderr
    assert "71-keyctl-uhid.rules" in result.stderr
    assert hidraw_of("k2") is None


def test_attach_of_an_unknown_authenticator_creates_nothing(key1: Attached) -> None:
    before = sorted(Path("/dev").glob("hidraw*"))
    result = keyctl("virtual", "attach", "nosuch")
    assert result.returncode == 4, result.stderr
    assert "no virtual authenticator named 'nosuch'" in result.stderr
    assert sorted(Path("/dev").glob("hidraw*")) == before


def test_doctor_says_attach_works_here_and_not_for_another_user(home: Path) -> None:
    def attach_check(user: list[str] | None) -> dict[str, str]:
        run = keyctl("doctor", "--json", user=user, env=nobody_env() if user else None)
        assert run.stdout, run.stderr
        report = json.loads(run.stdout)
        return next(c for c in report["checks"] if c["name"] == "virtual attach")

    assert attach_check(None)["status"] == "ok"
    other = attach_check(NOBODY)
    assert other["status"] == "info"
    assert "71-keyctl-uhid.rules" in other["fix"]


def udev_properties(device: str) -> str:
    return subprocess.run(
        ["udevadm", "info", "--query=property", device], capture_output=True, text=True, check=True
    ).stdout


def test_the_udev_rules_apply_to_the_attached_key_and_dev_uhid(key1: Attached) -> None:
    """systemd-udevd with the project's rules files (in /run/udev/rules.d: the guest's /etc is read-only)."""
    rules = Path("/run/udev/rules.d")
    rules.mkdir(parents=True, exist_ok=True)
    for source in (ROOT / "scripts" / "udev").glob("*.rules"):
        (rules / source.name).write_text(source.read_text())
    os.environ["SYSTEMD_IGNORE_CHROOT"] = "1"  # the guest runs the host's root in a chroot
    daemon = subprocess.Popen(
        ["/lib/systemd/systemd-udevd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        # A uevent sent before udevd listens is lost (and settle then has nothing to wait for): wait until
        # the daemon answers on its control socket, then trigger and wait for those very events.
        deadline = time.monotonic() + 60
        while subprocess.run(["udevadm", "control", "--ping"], capture_output=True).returncode != 0:
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else "udevd exited"
            assert time.monotonic() < deadline, "systemd-udevd did not answer within 60 s"
            time.sleep(0.2)
        sysfs = f"/sys/class/hidraw/{key1.path.name}"
        for target in (sysfs, "/sys/devices/virtual/misc/uhid"):
            subprocess.run(["udevadm", "trigger", "--action=add", "--settle", target], check=True, timeout=90)
        properties = udev_properties(sysfs)
        assert "ID_FIDO_TOKEN=1" in properties
        assert "ID_SECURITY_TOKEN=1" in properties
        node = key1.path.stat()
        import grp

        assert (grp.getgrgid(node.st_gid).gr_name, oct(node.st_mode & 0o777)) == ("plugdev", "0o660")
        uhid = udev_properties("/dev/uhid")
        assert re.search(r"^(CURRENT_)?TAGS=.*:uaccess:", uhid, re.M), uhid
    finally:
        daemon.terminate()
        _, log = daemon.communicate(timeout=30)
    assert "keyctl" not in log, log  # udevd names a rules file it cannot parse
