"""The interop matrix: every ceremony keyctl runs against one relying party, with the outcome of each.

A ``Cell`` is what the README table shows; ``detail`` keeps what the server answered, for the tests'
assertions. Each library's run uses fresh virtual authenticators and fresh user names, and is done once
per test session (``outcomes``)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from keyctl.authenticator import VirtualAuthenticator, new_state
from keyctl.authenticator.state import AttestationMode
from keyctl.errors import KeyctlError
from keyctl.hid.inprocess import connect
from keyctl.webauthn import flows, profile
from keyctl.webauthn.session import Session
from tests.interop.conftest import PROFILE, RelyingParty
from tests.webauthn.conftest import Quiet

CEREMONIES = (
    "register (defaults)",
    "register (resident key + UV)",
    "login (username first)",
    "login (username-less)",
    "tampered signature",
    "replayed assertion",
    "wrong origin",
)
VARIANTS = (
    "attestation direct",
    "attestation enterprise",
    "hints",
    "credProps",
    "prf",
    "largeBlob",
    "largeBlob required",
    "credProtect",
    "excludeCredentials",
    "RS256 only",
)
OUTPUT = (
    "attestation none",
    "attestation self",
    "attestation x5c",
    "counter",
    "BE/BS flags",
    "credProps output",
)


@dataclass(frozen=True)
class Cell:
    text: str  # what the README table shows
    outcome: str  # "ok", "refused" (a negative the server refused), "error" (keyctl's error), "n/a"
    detail: Mapping[str, Any] = field(default_factory=dict)


def key(mode: AttestationMode = AttestationMode.NONE) -> VirtualAuthenticator:
    return VirtualAuthenticator(new_state(attestation_mode=mode))


def user() -> str:
    return f"u{secrets.token_hex(4)}@example.com"


class Tampering(Session):
    """A session whose login finish body a test rewrites before it is sent."""

    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    sent: list[dict[str, Any]]

    def call(self, method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("finish") and path == self.profile.login.finish.path:
            if self.rewrite is not None:
                body = self.rewrite(dict(body))
            self.sent.append(dict(body))
        return super().call(method, path, body, *args, **kwargs)


class Run:
    """keyctl against one relying party, through the committed TOML profile."""

    def __init__(self, rp: RelyingParty) -> None:
        self.rp = rp
        self.profile = profile.load(str(PROFILE))
        self.last_login: dict[str, Any] = {}  # the finish body of the last verified login

    @contextmanager
    def session(self) -> Iterator[Tampering]:
        with Tampering(self.rp.url, self.profile, self.rp.url) as session:
            session.sent = []
            yield session

    def client(self, authenticator: VirtualAuthenticator, origin: str | None = None) -> flows.Client:
        return flows.Client(
            origin=origin or self.rp.url,
            authenticator="virtual",
            open_device=lambda: connect(authenticator),
            interaction=Quiet(),
            timeout_s=10,
            insecure=origin is not None,
        )

    def register(self, authenticator: VirtualAuthenticator, request: flows.Request) -> Any:
        with self.session() as session:
            return flows.register(session, self.client(authenticator), request).server

    def login(
        self,
        authenticator: VirtualAuthenticator,
        request: flows.Request,
        origin: str | None = None,
        rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Any:
        with self.session() as session:
            session.rewrite = rewrite
            result = flows.login(session, self.client(authenticator, origin), request)
            self.last_login = session.sent[-1]
            return result.server


def attempt(step: Callable[[], Any], ok: Callable[[Any], str]) -> Cell:
    try:
        answer = step()
    except KeyctlError as error:
        return Cell(f"error: {error.message}", "error", {"error": error})
    return Cell(ok(answer), "ok", answer if isinstance(answer, dict) else {})


def refused(step: Callable[[], Any]) -> Cell:
    """A negative: the server must refuse (keyctl then reports the server's reason)."""
    try:
        answer = step()
    except KeyctlError as error:
        return Cell("refused", "refused", {"error": error})
    return Cell("ACCEPTED", "ok", answer)


def _flip_signature(body: dict[str, Any]) -> dict[str, Any]:
    response = dict(body["response"])
    signature = bytearray(base64.urlsafe_b64decode(response["signature"] + "=="))
    signature[-1] ^= 0x01
    response["signature"] = base64.urlsafe_b64encode(bytes(signature)).rstrip(b"=").decode()
    return {**body, "response": response}


def ceremonies(run: Run) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    first, discoverable = key(), key()
    alice, bob = user(), user()
    cells["register (defaults)"] = attempt(
        lambda: run.register(first, flows.Request(user=alice)), lambda a: f"ok ({a['fmt']})"
    )
    cells["register (resident key + UV)"] = attempt(
        lambda: run.register(discoverable, flows.Request(user=bob, resident=True, uv="required")),
        lambda a: "ok (UV)" if a["userVerified"] else "ok (no UV!)",
    )
    cells["login (username first)"] = attempt(
        lambda: run.login(first, flows.Request(user=alice)), lambda a: f"ok ({a['username']})"
    )
    cells["login (username-less)"] = attempt(
        lambda: run.login(discoverable, flows.Request()), lambda a: f"ok ({a['username']})"
    )
    if cells["login (username first)"].outcome != "ok":
        for name in ("tampered signature", "replayed assertion", "wrong origin"):
            cells[name] = Cell("n/a (no login verifies)", "n/a")
        return cells
    cells["tampered signature"] = refused(
        lambda: run.login(first, flows.Request(user=alice), rewrite=_flip_signature)
    )
    valid = attempt(lambda: run.login(first, flows.Request(user=alice)), lambda a: "ok")
    assert valid.outcome == "ok", valid.text
    replayed = run.last_login
    cells["replayed assertion"] = refused(
        lambda: run.login(first, flows.Request(user=alice), rewrite=lambda body: replayed)
    )
    # the same host and rpId on another port: another origin (keyctl refuses any other host itself)
    wrong = run.rp.url.rsplit(":", 1)[0] + ":1"
    cells["wrong origin"] = refused(lambda: run.login(first, flows.Request(user=alice), origin=wrong))
    return cells


def _with_variant(run: Run, variant: dict[str, Any], step: Callable[[], Cell]) -> Cell:
    unsupported = run.rp.control(**variant)
    try:
        if unsupported:
            return Cell(f"n/a (no {', '.join(unsupported)} option)", "n/a")
        return step()
    finally:
        run.rp.control()


def variants(run: Run) -> dict[str, Cell]:
    def register(variant: dict[str, Any], ok: Callable[[Any], str], **request: Any) -> Cell:
        return _with_variant(
            run,
            variant,
            lambda: attempt(lambda: run.register(key(), flows.Request(user=user(), **request)), ok),
        )

    cells = {
        "attestation direct": register({"attestation": "direct"}, lambda a: f"ok ({a['fmt']})"),
        "attestation enterprise": register({"attestation": "enterprise"}, lambda a: f"ok ({a['fmt']})"),
        "credProps": register(
            {"extensions": {"credProps": True}}, lambda a: f"ok (rk {a['credProps']['rk']})"
        ),
        "prf": register({"extensions": {"prf": {}}}, lambda a: "ok"),
        "largeBlob": register({"extensions": {"largeBlob": {"support": "preferred"}}}, lambda a: "ok"),
        "largeBlob required": register(
            {"extensions": {"largeBlob": {"support": "required"}}}, lambda a: "ok", resident=True
        ),
        "credProtect": register(
            {
                "extensions": {
                    "credentialProtectionPolicy": "userVerificationRequired",
                    "enforceCredentialProtectionPolicy": True,
                }
            },
            lambda a: "ok",
            resident=True,
        ),
        "RS256 only": register({"algorithms": [-257]}, lambda a: "ok"),
    }
    hinted = [
        register({"hint": hint}, lambda a: "ok") for hint in ("security-key", "client-device", "hybrid")
    ]
    cells["hints"] = next((c for c in hinted if c.outcome != "ok"), dataclasses.replace(hinted[0], text="ok"))
    same = key()
    name = user()
    run.register(same, flows.Request(user=name))
    cells["excludeCredentials"] = attempt(
        lambda: run.register(same, flows.Request(user=name)), lambda a: "ACCEPTED"
    )
    return cells


def output(run: Run) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for mode in AttestationMode:
        # direct: the relying party asks for the attestation the authenticator makes
        cells[f"attestation {mode.value}"] = _with_variant(
            run,
            {"attestation": "direct"},
            lambda mode=mode: attempt(  # type: ignore[misc]
                lambda: run.register(key(mode), flows.Request(user=user())),
                lambda a: f"ok ({a['fmt']})" if a["attestationChecked"] else f"ok ({a['fmt']}, not checked)",
            ),
        )
    authenticator, name = key(), user()
    unsupported = run.rp.control(extensions={"credProps": True})
    registered = run.register(authenticator, flows.Request(user=name, resident=True))
    run.rp.control()
    credprops = registered["credProps"]
    cells["credProps output"] = (
        Cell("n/a (no extensions option)", "n/a")
        if unsupported
        else Cell(
            f"ok (rk {credprops['rk']})" if credprops else "not reported", "ok" if credprops else "error"
        )
    )
    logins = attempt(lambda: run.login(authenticator, flows.Request(user=name)), lambda a: "ok")
    if logins.outcome != "ok":
        cells["counter"] = cells["BE/BS flags"] = logins
        return cells
    with authenticator.store.transaction() as state:
        cloned = VirtualAuthenticator(copy.deepcopy(state))  # a copy of the key as it is now
    first = logins.detail
    second = run.login(authenticator, flows.Request(user=name))
    counters = [registered["counter"], first["counter"], second["counter"]]
    clone = refused(lambda: run.login(cloned, flows.Request(user=name)))  # its counter is behind
    cells["counter"] = Cell(
        f"ok ({' < '.join(map(str, counters))}; a clone {clone.text})",
        "ok" if clone.outcome == "refused" else "error",
        {"counters": counters, "clone": clone},
    )
    flags = (
        registered["backupEligible"],
        registered["backupState"],
        second["backupEligible"],
        second["backupState"],
    )
    cells["BE/BS flags"] = Cell(
        "n/a (not read by the library)"
        if None in flags
        else f"ok (BE {int(bool(flags[0]))}, BS {int(bool(flags[1]))})",
        "n/a" if None in flags else "ok",
        {"flags": flags},
    )
    return cells
