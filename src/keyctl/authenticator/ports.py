"""The authenticator's side effects, injected: user presence/verification policy, clock, randomness,
fingerprint sensor.

Tests use a FakeClock, a SeededRng and a scripted sensor; the CLI passes a terminal prompter for the
``prompt`` policy.
The ``Link`` is the transport's side of one running command: keepalives out, cancellation in.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Protocol

from keyctl.authenticator.status import CtapFailure, Status

KEEPALIVE_INTERVAL_S = 0.1


class KeepaliveStatus(IntEnum):
    PROCESSING = 1
    UPNEEDED = 2


class Link(Protocol):
    """What a running command sees of its transport."""

    def keepalive(self, status: KeepaliveStatus) -> None: ...

    def cancelled(self) -> bool: ...


class DirectLink:
    """For calls without a transport (tests of the core, the store): never cancelled, no keepalives."""

    def keepalive(self, status: KeepaliveStatus) -> None:
        return None

    def cancelled(self) -> bool:
        return False


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``event``; True when it is set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.wait(0.001):
            return True
        self.now += seconds
        return event.is_set()


class Rng(Protocol):
    def random(self, size: int) -> bytes: ...


class SystemRng:
    def random(self, size: int) -> bytes:
        return os.urandom(size)


class SeededRng:
    """Deterministic bytes for tests (SHA-256 in counter mode); never for real keys."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self._lock = threading.Lock()

    def random(self, size: int) -> bytes:
        out = b""
        with self._lock:
            while len(out) < size:
                self._counter += 1
                out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        return out[:size]


class PresenceMode(StrEnum):
    AUTO = "auto"  # touch at once (CI)
    DENY = "deny"  # the user refuses: OPERATION_DENIED
    PROMPT = "prompt"  # ask on the terminal
    TIMEOUT = "timeout"  # nobody touches: USER_ACTION_TIMEOUT after the timeout


class UvMode(StrEnum):
    AUTO = "auto"  # built-in user verification needing no enrollment (like on-device PIN entry): succeeds
    DENY = "deny"  # the same, always failing: UV_INVALID
    NONE = "none"  # no built-in user verification (PIN only)
    FINGERPRINT = "fingerprint"  # a fingerprint sensor: user verification once a finger is enrolled


@dataclass(frozen=True)
class PresenceRequest:
    """What the user is asked to confirm by a touch."""

    action: str
    rp_id: str | None = None


Prompter = Callable[[PresenceRequest], bool]


@dataclass(frozen=True)
class Policy:
    presence: PresenceMode = PresenceMode.AUTO
    presence_timeout_s: float = 30.0
    uv: UvMode = UvMode.AUTO
    prompter: Prompter | None = None


def confirm_presence(policy: Policy, action: str, rp_id: str | None, link: Link, clock: Clock) -> None:
    """Wait for a touch to ``action`` (for ``rp_id``) according to the policy; raise the CTAP status a
    real key would answer with."""
    if policy.presence is PresenceMode.AUTO:
        return
    if policy.presence is PresenceMode.DENY:
        raise CtapFailure(Status.OPERATION_DENIED)
    answer: list[bool] = []
    done = threading.Event()
    if policy.presence is PresenceMode.PROMPT:
        prompter = policy.prompter
        if prompter is None:
            raise CtapFailure(Status.OPERATION_DENIED)

        def ask() -> None:
            try:
                answer.append(prompter(PresenceRequest(action, rp_id)))
            finally:
                done.set()

        threading.Thread(target=ask, name="presence-prompt", daemon=True).start()
    deadline = clock.monotonic() + policy.presence_timeout_s
    while not done.is_set():
        if link.cancelled():
            raise CtapFailure(Status.KEEPALIVE_CANCEL)
        if clock.monotonic() >= deadline:
            raise CtapFailure(Status.USER_ACTION_TIMEOUT)
        link.keepalive(KeepaliveStatus.UPNEEDED)
        clock.wait(done, KEEPALIVE_INTERVAL_S)
    if not answer or not answer[0]:
        raise CtapFailure(Status.OPERATION_DENIED)


TOUCH_KEPT_S = 10.0  # how long a U2F touch waits for the request (retry) that uses it


class LatchedTouch:
    """U2F's test of user presence: a request never waits for the person. Without a touch it is answered
    SW_CONDITIONS_NOT_SATISFIED ("test-of-user-presence-required", FIDO U2F Raw Message Formats, status
    codes) while the key asks; the host retries, and a touch given meanwhile is kept for the next request,
    which uses it up."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._asking = False
        self._touched_at: float | None = None

    def take(self, prompter: Prompter, request: PresenceRequest) -> bool:
        """True when a kept touch serves this request; otherwise ask (once at a time) and return False."""
        with self._lock:
            touched_at, self._touched_at = self._touched_at, None
            if touched_at is not None and self._clock.monotonic() - touched_at <= TOUCH_KEPT_S:
                return True
            if not self._asking:
                self._asking = True
                threading.Thread(target=self._ask, args=(prompter, request), daemon=True).start()
            return False

    def _ask(self, prompter: Prompter, request: PresenceRequest) -> None:
        touched = False
        try:
            touched = prompter(request)
        finally:
            with self._lock:
                self._asking = False
                if touched:
                    self._touched_at = self._clock.monotonic()


class SampleStatus(IntEnum):
    """lastEnrollSampleStatus of authenticatorBioEnrollment (CTAP 2.1 §6.7)."""

    GOOD = 0x00
    TOO_HIGH = 0x01
    TOO_LOW = 0x02
    TOO_LEFT = 0x03
    TOO_RIGHT = 0x04
    TOO_FAST = 0x05
    TOO_SLOW = 0x06
    POOR_QUALITY = 0x07
    TOO_SKEWED = 0x08
    TOO_SHORT = 0x09
    MERGE_FAILURE = 0x0A
    EXISTS = 0x0B
    NO_USER_ACTIVITY = 0x0D
    NO_UP_TRANSITION = 0x0E


class Sensor(Protocol):
    """The fingerprint sensor bio enrollment reads from."""

    samples_required: int  # good samples an enrollment takes

    def capture(self) -> SampleStatus | None:
        """One touch of the sensor: how good the sample was, or None when no finger came in time."""
        ...


class ScriptedSensor:
    """The simulated sensor: every sample is good unless a test scripted the next results.

    ``None`` in the script stands for nobody touching the sensor (USER_ACTION_TIMEOUT).
    """

    def __init__(self, samples_required: int = 4, script: Iterable[SampleStatus | None] = ()) -> None:
        if samples_required < 1:
            raise ValueError("an enrollment takes at least one sample")
        self.samples_required = samples_required
        self._script: deque[SampleStatus | None] = deque(script)
        self._lock = threading.Lock()

    def script(self, *results: SampleStatus | None) -> None:
        """Queue the results of the next captures."""
        with self._lock:
            self._script.extend(results)

    def capture(self) -> SampleStatus | None:
        with self._lock:
            return self._script.popleft() if self._script else SampleStatus.GOOD
