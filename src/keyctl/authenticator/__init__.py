"""The virtual CTAP2 authenticator (device side). No I/O of its own: transports live in keyctl.hid."""

from keyctl.authenticator.device import MemoryStore, new_state
from keyctl.authenticator.ports import (
    FakeClock,
    Policy,
    PresenceMode,
    PresenceRequest,
    SampleStatus,
    ScriptedSensor,
    SeededRng,
    UvMode,
)
from keyctl.authenticator.state import AttestationMode, AuthenticatorState, CounterMode
from keyctl.authenticator.virtual import VirtualAuthenticator

__all__ = [
    "AttestationMode",
    "AuthenticatorState",
    "CounterMode",
    "FakeClock",
    "MemoryStore",
    "Policy",
    "PresenceMode",
    "PresenceRequest",
    "SampleStatus",
    "ScriptedSensor",
    "SeededRng",
    "UvMode",
    "VirtualAuthenticator",
    "new_state",
]
