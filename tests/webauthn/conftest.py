"""Real parts for the ceremony tests: the reference server on loopback with a clock the test moves, and
virtual authenticators reached in-process or over UDP (both end in fido2's CtapHidDevice)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fido2.ctap import CtapDevice

from keyctl.authenticator import Policy, VirtualAuthenticator
from keyctl.hid.inprocess import connect
from keyctl.hid.udp import UdpServer, open_udp
from keyctl.server import ServerHandle, start
from keyctl.webauthn import flows, profile, signin
from keyctl.webauthn.session import Session

PASSWORD = "correct horse battery staple"


class Quiet:
    """Nothing to ask: the virtual authenticator's policy decides."""

    def __init__(self, pin: str | None = None) -> None:
        self._pin = pin
        self.touches = 0

    def touch(self) -> None:
        self.touches += 1

    def pin(self) -> str | None:
        return self._pin


@dataclass
class Clock:
    """The reference server's clock: real time plus what the test adds."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def oathtool_code(secret: str, at: float) -> str:
    """A TOTP code from Debian's oathtool: an implementation keyctl does not share."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    return subprocess.run(
        ["oathtool", "--totp", "-b", secret, "-N", f"{stamp} UTC"], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class Reference:
    server: ServerHandle
    clock: Clock
    recovery: dict[str, str] = field(default_factory=dict)  # email -> current recovery code

    @property
    def url(self) -> str:
        return self.server.url

    def session(self) -> Session:
        return Session(self.url, profile.load("keyctl"), self.url)

    def account(self, email: str) -> Session:
        """A new account, signed in with password + TOTP enrollment (codes from oathtool)."""
        self.server.create_user(email, PASSWORD)
        session = self.session()
        signed_in = sign_up(session, email, self.clock)
        assert signed_in.recovery_code is not None
        self.recovery[email] = signed_in.recovery_code
        return session


def sign_up(session: Session, email: str, clock: Callable[[], float]) -> signin.SignedIn:
    """First sign-in of an account: password, TOTP enrollment with codes from oathtool, recovery code."""

    def enroll(uri: str) -> signin.CodeSource:
        secret = parse_qs(urlsplit(uri).query)["secret"][0]
        return lambda: oathtool_code(secret, clock())

    return signin.password_sign_in(
        session, signin.Password(email, PASSWORD, enroll=enroll), lambda step: None
    )


def account_with_totp(reference: Reference, email: str) -> str:
    """An account that enrolled TOTP two steps ago (as a pipeline's account did long before): its secret."""
    reference.server.create_user(email, PASSWORD)
    secret: list[str] = []

    def enroll(uri: str) -> signin.CodeSource:
        secret.append(parse_qs(urlsplit(uri).query)["secret"][0])
        return lambda: oathtool_code(secret[0], reference.clock())

    reference.clock.offset = -60
    with reference.session() as session:
        signin.password_sign_in(session, signin.Password(email, PASSWORD, enroll=enroll), lambda step: None)
    reference.clock.offset = 0
    return secret[0]


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[Reference]:
    clock = Clock()
    with start(tmp_path / "rp.sqlite3", clock=clock, rate_limit=100_000) as server:
        yield Reference(server, clock)


Opener = Callable[[VirtualAuthenticator], Callable[[], CtapDevice]]


@pytest.fixture(params=["inprocess", "udp"])
def transport(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """How the client reaches a virtual authenticator: in-process CTAPHID, or CTAPHID over UDP."""
    servers: list[UdpServer] = []

    def opener(authenticator: VirtualAuthenticator) -> Callable[[], CtapDevice]:
        if request.param == "inprocess":
            return lambda: connect(authenticator)
        server = UdpServer(authenticator, "127.0.0.1", 0).start()
        servers.append(server)
        return lambda: open_udp(*server.address)

    yield opener
    for server in servers:
        server.stop()


@pytest.fixture
def udp_authenticator() -> Iterator[Callable[..., str]]:
    """Serve a virtual authenticator over UDP for CLI runs: returns its ``udp:HOST:PORT`` spec."""
    servers: list[UdpServer] = []

    def serve(authenticator: VirtualAuthenticator) -> str:
        server = UdpServer(authenticator, "127.0.0.1", 0).start()
        servers.append(server)
        host, port = server.address
        return f"udp:{host}:{port}"

    yield serve
    for server in servers:
        server.stop()


def client(origin: str, open_device: Callable[[], CtapDevice], insecure: bool = False) -> flows.Client:
    return flows.Client(
        origin=origin,
        authenticator="virtual",
        open_device=open_device,
        interaction=Quiet(),
        insecure=insecure,
    )


def authenticator(policy: Policy | None = None, pin_code: str | None = None) -> VirtualAuthenticator:
    return VirtualAuthenticator(policy=policy, pin_code=pin_code)
