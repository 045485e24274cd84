"""Synced passkeys on several devices: a clone is a second device signed in to the same provider account,
and a sync makes two such devices hold the same discoverable credentials again.

A sync is a two-way merge against what both held after their previous sync (``sync_bases``): a passkey
one side has and the other lacks was created on the first side if it is not in that base, and deleted
on the other if it is. Pure functions over states; the caller loads and saves them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from keyctl.authenticator.state import (
    MAX_RESIDENT,
    PIN_RETRIES,
    UV_RETRIES,
    AuthenticatorState,
    Kind,
    ResidentCredential,
)


class SyncRefused(ValueError):
    """The authenticators cannot share passkeys; the message says why."""


def _check_synced(name: str, state: AuthenticatorState) -> None:
    if state.kind is Kind.SECURITY_KEY:
        raise SyncRefused(
            f"{name} is a security key: its passkeys are device-bound and never leave it, so it cannot be "
            "cloned or synced"
        )
    if state.kind is not Kind.SYNCED:
        raise SyncRefused(
            f"{name} is a {state.kind} authenticator: its passkeys are device-bound, not synced"
        )


def clone(name: str, state: AuthenticatorState, new_name: str) -> AuthenticatorState:
    """A second device of ``state``'s provider account: the same passkeys and keys, its own PIN, retry
    counters and fingerprints (none yet), and each one's sync base set to what both now hold."""
    _check_synced(name, state)
    twin = copy.deepcopy(state)
    twin.pin_hash = None
    twin.pin_code_points = 0
    twin.pin_retries = PIN_RETRIES
    twin.uv_retries = UV_RETRIES
    twin.force_pin_change = False
    twin.templates = []
    held = [c.credential_id for c in state.credentials]
    twin.sync_bases = {name: list(held)}
    state.sync_bases[new_name] = list(held)
    return twin


@dataclass(frozen=True)
class SyncResult:
    copied_to_first: int
    copied_to_second: int
    removed: int  # passkeys deleted on one device since the last sync, now deleted on the other too
    held: int  # passkeys both devices hold now


def _copy(record: ResidentCredential, into: AuthenticatorState) -> ResidentCredential:
    serial = into.next_serial
    into.next_serial += 1
    return replace(record, sign_count=0, serial=serial)


def sync(
    first_name: str, first: AuthenticatorState, second_name: str, second: AuthenticatorState
) -> SyncResult:
    """Merge both devices' discoverable credentials in place (nothing changes when SyncRefused)."""
    _check_synced(first_name, first)
    _check_synced(second_name, second)
    if first.wrap_key != second.wrap_key:
        raise SyncRefused(
            f"{first_name} and {second_name} are not signed in to the same provider account "
            f"(neither is a clone of the other): make the second device with 'keyctl virtual clone'"
        )
    base = set(first.sync_bases.get(second_name, second.sync_bases.get(first_name, [])))
    mine = {c.credential_id: c for c in first.credentials}
    theirs = {c.credential_id: c for c in second.credentials}
    gone = {i for i in mine.keys() ^ theirs.keys() if i in base}
    to_second = [c for i, c in mine.items() if i not in theirs and i not in base]
    to_first = [c for i, c in theirs.items() if i not in mine and i not in base]
    kept_first = [c for c in first.credentials if c.credential_id not in gone]
    kept_second = [c for c in second.credentials if c.credential_id not in gone]
    if max(len(kept_first) + len(to_first), len(kept_second) + len(to_second)) > MAX_RESIDENT:
        raise SyncRefused(f"together they hold more than the {MAX_RESIDENT} passkeys one device can")
    first.credentials = kept_first + [_copy(c, first) for c in to_first]
    second.credentials = kept_second + [_copy(c, second) for c in to_second]
    held = [c.credential_id for c in first.credentials]
    first.sync_bases[second_name] = list(held)
    second.sync_bases[first_name] = list(held)
    return SyncResult(len(to_first), len(to_second), len(gone), len(held))
