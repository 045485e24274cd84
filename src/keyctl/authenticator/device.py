"""The authenticator's core: persistent state behind a store, volatile state, injected ports.

Commands depend on this module and never the reverse: the types of per-session (volatile) state live
here, beside the state itself. ``virtual.VirtualAuthenticator`` adds the command dispatch and the HID
interface on top.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from keyctl.authenticator import attestation, credentials, pin
from keyctl.authenticator.credentials import Alg, PrivateKey, WrappedKey
from keyctl.authenticator.model import ModelProfile
from keyctl.authenticator.ports import (
    Clock,
    LatchedTouch,
    Link,
    Policy,
    PresenceMode,
    Prompter,
    Rng,
    SampleStatus,
    ScriptedSensor,
    Sensor,
    SystemClock,
    SystemRng,
    UvMode,
    confirm_presence,
)
from keyctl.authenticator.state import (
    DEFAULT_MIN_PIN_LENGTH,
    PIN_RETRIES,
    UV_RETRIES,
    AttestationMode,
    AuthenticatorState,
    CounterMode,
    Kind,
    Protocols,
    ResidentCredential,
)
from keyctl.authenticator.status import CtapFailure, Status

log = logging.getLogger(__name__)

_KEY_CACHE_SIZE = 256
RESET_WINDOW_S = 10.0  # authenticatorReset is allowed this long after power-up, as on real keys


class StateStore(Protocol):
    def transaction(self) -> Any:
        """A context manager yielding the current state; what the command changed is saved on exit."""
        ...


class MemoryStore:
    """State held in memory only (tests, demos, benchmarks)."""

    def __init__(self, state: AuthenticatorState) -> None:
        self.state = state

    def transaction(self) -> AbstractContextManager[AuthenticatorState]:
        return nullcontext(self.state)


def new_state(
    aaguid: bytes | None = None,
    attestation_mode: AttestationMode = AttestationMode.NONE,
    counter_mode: CounterMode | None = None,
    presence: PresenceMode = PresenceMode.AUTO,
    uv: UvMode = UvMode.AUTO,
    presence_timeout_s: float = 30.0,
    rng: Rng | None = None,
    kind: Kind = Kind.SECURITY_KEY,
    ep_rp_ids: Sequence[str] = (),
    protocols: Protocols | None = None,
    model: ModelProfile | None = None,
) -> AuthenticatorState:
    """A factory-fresh authenticator with its own wrapping key and attestation CA.

    Platform authenticators and passkey providers verify the user themselves on every ceremony (alwaysUv
    with built-in UV) and attest with ``none`` (keyctl cannot honestly make a TPM or Apple statement); a
    provider's counter stays 0, since copies on several devices cannot share one. ValueError names a
    setting the kind does not allow.
    """
    if kind is not Kind.SECURITY_KEY:
        if attestation_mode is not AttestationMode.NONE:
            raise ValueError(f"a {kind} authenticator attests with 'none' only")
        if uv is UvMode.NONE:
            raise ValueError(f"a {kind} authenticator has user verification built in")
        if uv is UvMode.FINGERPRINT:
            raise ValueError(f"a {kind} authenticator enrolls fingers in the operating system: use uv 'auto'")
        if ep_rp_ids:
            raise ValueError(f"a {kind} authenticator has no enterprise attestation")
    if model is not None:  # the model decides what it speaks and whether it has built-in UV
        if kind is not Kind.SECURITY_KEY or protocols is not None:
            raise ValueError("a model of a real key decides its kind and protocols")
        protocols = Protocols.BOTH if "U2F_V2" in model.versions else Protocols.CTAP2
        if "uv" not in model.options:
            uv = UvMode.NONE
    if protocols is None:
        protocols = Protocols.BOTH if kind is Kind.SECURITY_KEY else Protocols.CTAP2
    if kind is not Kind.SECURITY_KEY and protocols.u2f:
        raise ValueError(f"a {kind} authenticator does not speak CTAP1/U2F")
    if counter_mode is None:
        counter_mode = CounterMode.ZERO if kind is Kind.SYNCED else CounterMode.GLOBAL
    if kind is Kind.SYNCED and counter_mode is not CounterMode.ZERO:
        raise ValueError("a synced passkey's signature counter is always 0")
    provider = kind.provider_aaguid
    aaguid = aaguid or (uuid.UUID(provider).bytes if provider else uuid.uuid4().bytes)
    ca_key, ca_cert, att_key, att_cert = attestation.make_attestation_pki(aaguid)
    return AuthenticatorState(
        aaguid=aaguid,
        wrap_key=(rng or SystemRng()).random(32),
        attestation=attestation_mode,
        counter_mode=counter_mode,
        ca_key=ca_key,
        ca_cert=ca_cert,
        attestation_key=att_key,
        attestation_cert=att_cert,
        presence=presence.value,
        presence_timeout_s=presence_timeout_s,
        uv=uv.value,
        always_uv=kind is not Kind.SECURITY_KEY,
        kind=kind,
        ep_rp_ids=list(ep_rp_ids),
        protocols=protocols,
        model=model,
        min_pin_length=model.min_pin_length if model and model.min_pin_length else DEFAULT_MIN_PIN_LENGTH,
    )


def set_pin(state: AuthenticatorState, new_pin: str) -> None:
    """Set the PIN directly (state creation), with the same policy checks as clientPin setPIN."""
    encoded = new_pin.encode()
    if len(new_pin) < state.min_pin_length or len(encoded) > 63:
        raise ValueError(f"a PIN needs {state.min_pin_length} to 63 bytes")
    state.pin_hash = hashlib.sha256(encoded).digest()[:16]
    state.pin_code_points = len(new_pin)
    state.pin_retries = PIN_RETRIES


@dataclass(frozen=True)
class HmacSecretRequest:
    """Decrypted hmac-secret salts and how to encrypt the output back."""

    protocol: pin.Protocol
    shared_secret: bytes
    salts: tuple[bytes, ...]


@dataclass(frozen=True)
class AssertionContext:
    rp_hash: bytes
    client_data_hash: bytes
    up: bool
    uv: bool
    hmac_secret: HmacSecretRequest | None
    get_cred_blob: bool
    large_blob_key: bool = False
    third_party_payment: bool = False


@dataclass
class PendingAssertions:
    """What getNextAssertion continues from: the remaining discoverable credentials, by ID."""

    context: AssertionContext
    remaining: list[bytes]
    expires: float


@dataclass
class Enumeration:
    """credentialManagement enumerate*Begin state for the matching getNext subcommand."""

    kind: int  # the getNext subcommand this serves
    items: list[dict[int, Any]] = field(default_factory=list)


@dataclass
class Enrollment:
    """The bio enrollment under way: its template and the good samples it still needs."""

    template_id: bytes
    remaining: int


@dataclass
class LargeBlobWrite:
    """An authenticatorLargeBlobs set under way: the fragments so far of an array of ``length`` bytes."""

    length: int
    received: bytearray = field(default_factory=bytearray)


class Device:
    """A CTAP 2.1 authenticator's state and shared helpers; the commands act on it."""

    def __init__(
        self,
        store: StateStore | AuthenticatorState | None = None,
        *,
        pin_code: str | None = None,
        policy: Policy | None = None,
        prompter: Prompter | None = None,
        clock: Clock | None = None,
        rng: Rng | None = None,
        sensor: Sensor | None = None,
        reset_window_s: float | None = RESET_WINDOW_S,
    ) -> None:
        self.clock = clock or SystemClock()
        self.reset_window_s = reset_window_s  # None: reset is allowed at any time (test rigs)
        self.rng = rng or SystemRng()
        self.sensor: Sensor = sensor or ScriptedSensor()
        if store is None:
            store = new_state(rng=self.rng)
        if isinstance(store, AuthenticatorState):
            if pin_code is not None:
                set_pin(store, pin_code)
            store = MemoryStore(store)
        self.store: StateStore = store
        self._policy = policy
        self._prompter = prompter
        self._state_policy: tuple[tuple[str, float, str], Policy] | None = None
        self._key_cache: dict[bytes, PrivateKey] = {}
        self._unwrap_cache: dict[tuple[bytes, bytes, bytes], WrappedKey | None] = {}
        self.winks = 0
        with self.store.transaction() as state:
            self.may_wait = self.policy(state).presence in (PresenceMode.PROMPT, PresenceMode.TIMEOUT)
            self.protocols = state.protocols  # fixed at creation
        self.power_cycle()

    def power_cycle(self) -> None:
        """Simulate unplugging and re-inserting the key: volatile state is lost, the reset window opens."""
        self.powered_up_at = self.clock.monotonic()
        self.clear_volatile()

    def clear_volatile(self) -> None:
        """Forget every per-session state (a power cycle, or authenticatorReset)."""
        self.key_agreement = pin.KeyAgreement()
        self.token: pin.Token | None = None
        self.consecutive_pin_mismatches = 0
        self.pending_assertions: PendingAssertions | None = None
        self.enumeration: Enumeration | None = None
        self.enrollment: Enrollment | None = None
        self.large_blob_write: LargeBlobWrite | None = None
        self.u2f_touch = LatchedTouch(self.clock)

    def may_reset(self) -> bool:
        window = self.reset_window_s
        return window is None or self.clock.monotonic() - self.powered_up_at <= window

    # helpers shared by the commands

    def policy(self, state: AuthenticatorState) -> Policy:
        if self._policy is not None:
            return self._policy
        key = (state.presence, state.presence_timeout_s, state.uv)
        if self._state_policy is not None and self._state_policy[0] == key:
            return self._state_policy[1]
        policy = Policy(
            presence=PresenceMode(state.presence),
            presence_timeout_s=state.presence_timeout_s,
            uv=UvMode(state.uv),
            prompter=self._prompter,
        )
        self._state_policy = (key, policy)
        return policy

    def confirm_presence(self, state: AuthenticatorState, action: str, rp_id: str | None, link: Link) -> None:
        confirm_presence(self.policy(state), action, rp_id, link, self.clock)

    def has_builtin_uv(self, state: AuthenticatorState) -> bool:
        """Does it have a built-in user verification method (configured or not)?"""
        return self.policy(state).uv is not UvMode.NONE

    def has_sensor(self, state: AuthenticatorState) -> bool:
        """A fingerprint sensor, the only built-in method that needs enrolling (bio enrollment)."""
        return self.policy(state).uv is UvMode.FINGERPRINT

    def uv_configured(self, state: AuthenticatorState) -> bool:
        """getInfo's ``uv`` option: built-in user verification ready for use (a sensor needs a finger)."""
        return self.has_builtin_uv(state) and (bool(state.templates) or not self.has_sensor(state))

    def verify_user(self, state: AuthenticatorState) -> None:
        """Built-in user verification, with its retry counter (callers check ``uv_configured`` first).

        A sensor is read: a good sample is a matching finger. The other methods succeed (``auto``) or
        fail (``deny``) by policy.
        """
        if state.uv_retries <= 0:
            raise CtapFailure(Status.UV_BLOCKED)
        mode = self.policy(state).uv
        if mode is not UvMode.DENY:
            sample = self.sensor.capture() if mode is UvMode.FINGERPRINT else SampleStatus.GOOD
            if sample is None:
                raise CtapFailure(Status.USER_ACTION_TIMEOUT)
            if sample is SampleStatus.GOOD:
                state.uv_retries = UV_RETRIES
                return
        state.uv_retries -= 1
        raise CtapFailure(Status.UV_BLOCKED if state.uv_retries <= 0 else Status.UV_INVALID)

    def protected(self, state: AuthenticatorState) -> bool:
        """Is the authenticator protected by some form of user verification?"""
        return state.pin_hash is not None or self.uv_configured(state)

    def private_key(self, alg: Alg, private: bytes) -> PrivateKey:
        key = self._key_cache.get(private)
        if key is None:
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                self._key_cache.clear()
            key = self._key_cache[private] = credentials.load_private(alg, private)
        return key

    def unwrap(self, state: AuthenticatorState, credential_id: bytes, rp_hash: bytes) -> WrappedKey | None:
        """credentials.unwrap, remembered: IDs come back again and again in allow lists."""
        cache_key = (state.wrap_key, credential_id, rp_hash)
        if cache_key in self._unwrap_cache:
            return self._unwrap_cache[cache_key]
        if len(self._unwrap_cache) >= _KEY_CACHE_SIZE:
            self._unwrap_cache.clear()
        wrapped = self._unwrap_cache[cache_key] = credentials.unwrap(state.wrap_key, credential_id, rp_hash)
        return wrapped

    def next_counter(
        self, state: AuthenticatorState, credential_id: bytes, resident: ResidentCredential | None
    ) -> int:
        """The signature counter value for the next signature of this credential (never repeated)."""
        mode = state.counter_mode
        if mode is CounterMode.ZERO:
            return 0
        if mode is CounterMode.GLOBAL:
            state.global_counter += 1
            return state.global_counter
        if resident is not None:
            resident.sign_count += 1
            return resident.sign_count
        slot = hashlib.sha256(credential_id).digest()[:16]
        value = state.credential_counters.get(slot, 0) + 1
        state.credential_counters[slot] = value
        return value
