"""Synced passkeys on a second device: `keyctl virtual clone` and `keyctl virtual sync`, judged by
py_webauthn through fido2's client (a passkey made on one device signs in from the other)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from fido2.client import ClientError
from fido2.ctap import CtapError

from keyctl.authenticator import VirtualAuthenticator, store
from keyctl.authenticator.state import MAX_RESIDENT
from keyctl.errors import ExitCode
from keyctl.hid.inprocess import connect
from tests.authenticator import rp
from tests.conftest import Result

Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def ci_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = store.new_ci_key()
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, key)
    return key


def _device(name: str) -> VirtualAuthenticator:
    return VirtualAuthenticator(store.FileStore(name))


def _signs_in(name: str, registered: rp.Registered) -> None:
    """A sign-in on ``name`` with ``registered``'s passkey (allow list), verified by py_webauthn."""
    challenge, options = rp.request_options([registered.credential_id])
    response = rp.authenticate_response(connect(_device(name)), options)
    assert rp.verify_assertion(response, challenge, registered, 0) == 0  # counter 0 accepted, as synced


def _not_on(name: str, registered: rp.Registered) -> None:
    """The sign-in on ``name`` fails as 'Passkey not found on this device' (CTAP NO_CREDENTIALS)."""
    with pytest.raises(ClientError) as refused:
        _signs_in(name, registered)
    assert isinstance(refused.value.cause, CtapError)
    assert refused.value.cause.code == CtapError.ERR.NO_CREDENTIALS


def test_a_passkey_reaches_the_clone_and_later_ones_after_a_sync(cli: Cli) -> None:
    assert cli("virtual", "create", "phone", "--kind", "synced").exit_code == 0
    first = rp.register(connect(_device("phone")), user_name="alice")
    result = cli("virtual", "clone", "phone", "laptop")
    assert result.exit_code == 0, result.stderr
    _signs_in("laptop", first)  # made before the clone: already there

    later = rp.register(connect(_device("laptop")), user_name="bob")
    _not_on("phone", later)  # not synced yet
    synced = json.loads(cli("virtual", "sync", "phone", "laptop", "--json").stdout)
    assert synced == {"copied": {"phone": 1, "laptop": 0}, "removed": 0, "passkeys": 2}
    _signs_in("phone", later)
    assert json.loads(cli("virtual", "info", "phone", "--json").stdout)["synced_with"] == ["laptop"]

    # Registering alice again on the phone replaces her passkey there; the sync deletes the old one on
    # the laptop too (it was in both after the last sync) instead of bringing it back to the phone.
    again = rp.register(connect(_device("phone")), user_name="alice")
    synced = json.loads(cli("virtual", "sync", "laptop", "phone", "--json").stdout)
    assert synced == {"copied": {"laptop": 1, "phone": 0}, "removed": 1, "passkeys": 2}
    _signs_in("laptop", again)
    _not_on("laptop", first)
    held = {c.credential_id for c in store.FileStore("laptop").load().credentials}
    assert held == {again.credential_id, later.credential_id}
    assert held == {c.credential_id for c in store.FileStore("phone").load().credentials}


@pytest.mark.parametrize(
    ("kind", "said"), [("security-key", "is a security key"), ("platform", "device-bound")]
)
def test_device_bound_kinds_refuse_to_be_cloned(cli: Cli, kind: str, said: str) -> None:
    assert cli("virtual", "create", "key", "--kind", kind).exit_code == 0
    before = store.FileStore("key").load().to_bytes()
    result = cli("virtual", "clone", "key", "copy")
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert said in result.stderr
    assert not store.exists("copy")
    assert store.FileStore("key").load().to_bytes() == before


def test_sync_refusals_change_nothing(cli: Cli) -> None:
    for name in ("a", "other"):
        assert cli("virtual", "create", name, "--kind", "synced").exit_code == 0
    assert cli("virtual", "clone", "a", "b").exit_code == 0
    before = {n: store.FileStore(n).load().to_bytes() for n in ("a", "b", "other")}
    stranger = cli("virtual", "sync", "a", "other")
    assert stranger.exit_code == ExitCode.INVALID_INPUT
    assert "not signed in to the same provider account" in stranger.stderr
    assert cli("virtual", "clone", "a", "b").exit_code == ExitCode.ALREADY_EXISTS
    assert cli("virtual", "sync", "a", "a").exit_code == ExitCode.INVALID_INPUT
    assert cli("virtual", "sync", "a", "missing").exit_code == ExitCode.NOT_FOUND
    assert {n: store.FileStore(n).load().to_bytes() for n in ("a", "b", "other")} == before

    first = rp.register(connect(_device("a")), user_name="x")
    record = store.FileStore("a").load().credentials[0]
    with store.FileStore("b").transaction() as state:  # b full: the sync would overflow a
        state.credentials = [
            replace(record, credential_id=bytes([i]) * 16, serial=i) for i in range(MAX_RESIDENT)
        ]
    before = {n: store.FileStore(n).load().to_bytes() for n in ("a", "b")}
    full = cli("virtual", "sync", "a", "b")
    assert full.exit_code == ExitCode.INVALID_INPUT
    assert "more than the" in full.stderr
    assert {n: store.FileStore(n).load().to_bytes() for n in ("a", "b")} == before
    assert first.credential_id in {c.credential_id for c in store.FileStore("a").load().credentials}
