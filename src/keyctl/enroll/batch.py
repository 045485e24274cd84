"""One enrollment batch: for each user in turn, the next key, its PIN, an admin-issued enrollment
session, and the registration through the same ceremony code as ``keyctl register``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from keyctl.enroll import pins
from keyctl.enroll.log import Outcome, Record
from keyctl.errors import (
    CredentialExcluded,
    Interrupted,
    InvalidInput,
    KeyctlError,
    NoDevice,
    PasskeyTimeout,
    ServerUnavailable,
    SignInFailed,
)

if TYPE_CHECKING:
    from fido2.hid import CtapHidDevice

    from keyctl.device.key import SecurityKey
    from keyctl.webauthn.profile import Profile
    from keyctl.webauthn.session import Session

logger = logging.getLogger(__name__)

POLL_S = 0.5


@dataclass(frozen=True)
class FoundKey:
    spec: str  # what keyctl opens it with (usb:PATH, udp:HOST:PORT, virtual:NAME)
    serial: str | None


class KeySource(Protocol):
    def next_key(self, index: int) -> FoundKey:
        """The key for the index-th user of the batch (0-based)."""


class FixedKeys:
    """Keys named on the command line: one for every user, or one per user in order."""

    def __init__(self, specs: Sequence[str]) -> None:
        self.specs = list(specs)

    def next_key(self, index: int) -> FoundKey:
        return FoundKey(self.specs[index if len(self.specs) > 1 else 0], None)


def _usb_present() -> list[tuple[str, str | None]]:
    from fido2.hid import list_descriptors

    present = []
    for descriptor in list_descriptors():
        path = descriptor.path.decode() if isinstance(descriptor.path, bytes) else str(descriptor.path)
        present.append((path, descriptor.serial_number or None))
    return present


class UsbKeys:
    """Waits for a USB key not used yet in this batch, polling fido2's device list.

    A key counts as used by its serial number for the whole batch; a key without a readable serial
    counts as used by its hidraw path until that path disappears (the key was pulled out), since the
    kernel hands the same path to the next key plugged in. (Two serial-less keys swapped faster than
    one poll look like one key: keyctl keeps waiting.)"""

    def __init__(
        self,
        timeout_s: float,
        present: Callable[[], Iterable[tuple[str, str | None]]] = _usb_present,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._present = present
        self._sleep = sleep
        self._clock = clock
        self._used_paths: set[str] = set()
        self._used_serials: set[str] = set()

    def next_key(self, index: int) -> FoundKey:
        deadline = self._clock() + self.timeout_s
        while True:
            present = list(self._present())
            self._used_paths &= {path for path, _ in present}
            for path, serial in present:
                if serial in self._used_serials if serial is not None else path in self._used_paths:
                    continue
                self._used_paths.add(path)
                if serial is not None:
                    self._used_serials.add(serial)
                return FoundKey(f"usb:{path}", serial)
            if self._clock() >= deadline:
                raise PasskeyTimeout(
                    f"no new security key was inserted within {self.timeout_s:g} s",
                    "insert a key not used yet in this batch (keys already used are skipped)",
                )
            self._sleep(POLL_S)


class Prompts(Protocol):
    """What the terminal does for the batch (the CLI implements it); nothing here is logged."""

    def say(self, message: str) -> None: ...

    def new_pin(self, user: str) -> str:
        """A new PIN for this user's key (entered twice on a terminal)."""

    def existing_pin(self, user: str) -> str | None:
        """The PIN of a key that already has one, when the ceremony asks for it."""

    def generated_pin(self, user: str, pin: str) -> None:
        """Show a generated PIN once, to be handed to the user."""

    def touch(self) -> None: ...


@dataclass(frozen=True)
class Batch:
    server: str
    profile: Profile
    origin: str
    admin_token: str
    keys: KeySource
    prompts: Prompts
    pin_policy: pins.Policy
    timeout_s: float = 60.0
    insecure: bool = False


def open_enrollment(session: Session, admin_token: str, user: str) -> None:
    """Ask the admin API for this user's enrollment session; its cookie lands in ``session``."""
    import httpx

    from keyctl.webauthn.session import server_error

    path = session.profile.enroll.get("session")
    if path is None:
        raise InvalidInput(
            f"server profile {session.profile.name} has no admin enrollment endpoint",
            'use --profile keyctl, or add [enroll] session = "/path/{user}" to the profile',
        )
    url = session.server_url + path.replace("{user}", quote(user, safe="@"))
    headers = {
        "Authorization": f"Bearer {admin_token}",
        "Origin": session.origin,
        "Accept": "application/json",
    }
    try:
        response = session.client.post(url, json={}, headers=headers)
    except httpx.HTTPError as error:
        raise ServerUnavailable(
            f"Passkey unavailable: cannot reach {session.server_url} ({type(error).__name__})",
            "check the server URL and that the server is running",
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 300 or body is None:
        raise server_error(session.profile, response.status_code, body, finish=False)
    cookie = session.profile.session_cookie
    if cookie and session.cookie(cookie) is None:
        raise SignInFailed(
            f"Sign-in failed: the server issued no enrollment session cookie {cookie!r}",
            "check that --profile matches this server",
        )


def _open(spec: str) -> CtapHidDevice:
    from keyctl.hid import open_device

    try:
        return open_device(spec)
    except OSError as error:
        raise NoDevice(
            f"No compatible device found ({spec}: {error.strerror or type(error).__name__})",
            "insert the key; on Linux, for hidraw access: sudo keyctl doctor --install-udev-rules",
        ) from None


def _set_pin(batch: Batch, security_key: SecurityKey, user: str, key_min_length: int) -> str:
    """Set a new PIN on a key that has none, from the policy (generated) or the technician."""
    if batch.pin_policy.source == "generate":
        pin = batch.pin_policy.generate(key_min_length)
    else:
        pin = batch.prompts.new_pin(user)
    batch.pin_policy.check(pin)
    security_key.set_pin(pin)  # checks the key's own minPINLength before sending
    if batch.pin_policy.source == "generate":
        batch.prompts.generated_pin(user, pin)
    batch.prompts.say("PIN set on the key")
    return pin


class _Interaction:
    def __init__(self, prompts: Prompts, user: str, pin: str | None) -> None:
        self.prompts = prompts
        self.user = user
        self._pin = pin

    def touch(self) -> None:
        self.prompts.touch()

    def pin(self) -> str | None:
        return self._pin if self._pin is not None else self.prompts.existing_pin(self.user)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def enroll_user(batch: Batch, index: int, user: str) -> tuple[Record, KeyctlError | None]:
    """Enroll one user's key; every expected failure becomes a record (and its error), so the batch
    goes on."""
    from keyctl.device.key import SecurityKey
    from keyctl.webauthn import ceremony, flows
    from keyctl.webauthn.session import Session

    key: FoundKey | None = None
    aaguid: str | None = None

    def record(result: Outcome, detail: str, credential_id: str | None = None) -> Record:
        return Record(
            time=now_iso(),
            user=user,
            result=result,
            key=key.spec if key else None,
            serial=key.serial if key else None,
            aaguid=aaguid,
            credential_id=credential_id,
            detail=detail,
        )

    try:
        key = batch.keys.next_key(index)
        batch.prompts.say(f"using the key at {key.spec}" + (f" (serial {key.serial})" if key.serial else ""))
        with Session(batch.server, batch.profile, batch.origin) as session:
            open_enrollment(session, batch.admin_token, user)
            device = _open(key.spec)
            try:
                security_key = SecurityKey(device)
                info = security_key.info()
                aaguid = info.aaguid
                pin = None if info.pin_set else _set_pin(batch, security_key, user, info.min_pin_length)
            finally:
                device.close()
            spec = key.spec
            client = flows.Client(
                origin=batch.origin,
                authenticator=spec,
                open_device=lambda: ceremony.open_authenticator(spec),
                interaction=_Interaction(batch.prompts, user, pin),
                timeout_s=batch.timeout_s,
                insecure=batch.insecure,
            )
            result = flows.register(session, client, flows.Request(user=user))
        return record("enrolled", "passkey registered", result.credential_id), None
    except CredentialExcluded as error:
        return record("already_registered", error.message), None
    except KeyctlError as error:
        logger.info("enrollment of %s failed: %s", user, error.message)
        return record("failed", error.message), error
    except KeyboardInterrupt:  # Ctrl-C at a prompt: logged like a failure; the batch stops (exit 130)
        return record("failed", "interrupted with Ctrl-C"), Interrupted("interrupted with Ctrl-C")
