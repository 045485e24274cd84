"""Stored virtual authenticators: encrypted at rest, written atomically under a lock.

File: ``MAGIC || format || key source || nonce(12) || AES-256-GCM(key, nonce, state, aad=MAGIC||name)``.
The key is a per-authenticator secret in the OS keyring, or, in CI mode, the 32 bytes (base64url) in
``$KEYCTL_VIRTUAL_KEY``. Each command runs in a transaction: lock, load, run, save if anything
changed, unlock; the response leaves only after the save, so a signature counter is never reused.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyctl import config
from keyctl.authenticator import cbor
from keyctl.authenticator.state import AuthenticatorState
from keyctl.authenticator.status import CtapFailure
from keyctl.errors import AlreadyExists, InvalidInput, NotFound, StateError
from keyctl.fileio import FileLock, atomic_write

log = logging.getLogger(__name__)

ENV_VIRTUAL_KEY = "KEYCTL_VIRTUAL_KEY"
MAGIC = b"KCVA"
FORMAT = 1
SOURCE_ENV = ord("E")
SOURCE_KEYRING = ord("K")
EXPORT_PREFIX = "keyctl-virtual-1:"
LOCK_TIMEOUT_S = 30.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not a valid virtual authenticator name",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def virtual_dir() -> Path:
    return config.data_dir() / "virtual"


def _state_path(name: str) -> Path:
    return virtual_dir() / f"{check_name(name)}.state"


def _lock_path(name: str) -> Path:
    return virtual_dir() / f".{check_name(name)}.lock"


def _lock(name: str) -> FileLock:
    """The cross-process lock of one authenticator, in a private (0700) directory."""
    config.data_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    virtual_dir().mkdir(exist_ok=True, mode=0o700)
    return FileLock(_lock_path(name), timeout=LOCK_TIMEOUT_S, mode=0o600)


def _remove_stale_temps(name: str) -> None:
    """Delete what a save killed mid-write left behind (``atomic_write``'s ``.NAME.state.XXXXXXXX.tmp``, a
    full sealed copy of the state). Call it holding the lock: a live save holds it while its temp exists."""
    stale = re.compile(rf"\.{re.escape(name)}\.state\.[a-z0-9_]{{8}}\.tmp")
    for path in virtual_dir().glob(f".{name}.state.*.tmp"):
        if stale.fullmatch(path.name):
            path.unlink(missing_ok=True)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_ci_key() -> str:
    """A fresh value for $KEYCTL_VIRTUAL_KEY."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def _env_key() -> bytes | None:
    raw = os.environ.get(ENV_VIRTUAL_KEY)
    if not raw:
        return None
    try:
        key = _b64decode(raw.strip())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidInput(
            f"${ENV_VIRTUAL_KEY} is not base64url of 32 bytes",
            "generate one with 'keyctl virtual ci-key' and store it as a CI secret",
        )
    return key


def _account(name: str) -> str:
    return f"virtual-authenticator:{name}"


def _keyring_key(name: str, create: bool) -> bytes:
    from keyctl import secrets  # slow to import: only when a keyring is needed

    value = secrets.get_secret(_account(name))
    if value is None:
        if not create:
            raise StateError(
                f"the key of virtual authenticator {name!r} is missing from the OS keyring",
                f"remove it with 'keyctl virtual delete {name}' and create it again, or import a backup",
            )
        value = new_ci_key()
        secrets.set_secret(_account(name), value)
    key = _b64decode(value)
    if len(key) != 32:
        raise StateError(f"the keyring entry for virtual authenticator {name!r} is damaged", "")
    return key


def _seal(name: str, state: AuthenticatorState, key: bytes, source: int) -> bytes:
    nonce = os.urandom(12)
    header = MAGIC + bytes([FORMAT, source])
    return header + nonce + AESGCM(key).encrypt(nonce, state.to_bytes(), MAGIC + name.encode())


def _source(name: str, raw: bytes) -> int:
    if (
        len(raw) < 6 + 12 + 16
        or raw[:4] != MAGIC
        or raw[4] != FORMAT
        or raw[5] not in (SOURCE_ENV, SOURCE_KEYRING)
    ):
        raise StateError(
            f"the state file of virtual authenticator {name!r} is not a keyctl state file",
            f"restore it from a backup ('keyctl virtual import') or remove it ({_state_path(name)})",
        )
    return raw[5]


def _key_for(name: str, source: int, create: bool = False) -> bytes:
    if source == SOURCE_ENV:
        key = _env_key()
        if key is None:
            raise StateError(
                f"virtual authenticator {name!r} is encrypted with ${ENV_VIRTUAL_KEY}, which is not set",
                f"set ${ENV_VIRTUAL_KEY} to the value it was created with",
            )
        return key
    return _keyring_key(name, create)


def _unseal(name: str, raw: bytes, key: bytes) -> AuthenticatorState:
    try:
        plain = AESGCM(key).decrypt(raw[6:18], raw[18:], MAGIC + name.encode())
    except InvalidTag:
        raise StateError(
            f"cannot decrypt virtual authenticator {name!r}: wrong key or a damaged file",
            f"check ${ENV_VIRTUAL_KEY} (CI mode) or the OS keyring; or restore a backup",
        ) from None
    try:
        return AuthenticatorState.from_bytes(plain)
    except (ValueError, KeyError, TypeError) as error:
        raise StateError(f"the state of virtual authenticator {name!r} is unreadable ({error})", "") from None


class FileStore:
    """The state of one stored virtual authenticator, one transaction per CTAP command."""

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self.path = require(name)
        self._lock = _lock(name)
        with self._lock:
            _remove_stale_temps(name)
            raw = self.path.read_bytes()
        self._source = _source(name, raw)
        self._key = _key_for(name, self._source)
        _unseal(name, raw, self._key)  # fail now, with a KeyctlError, rather than inside a CTAP command

    @property
    def key_source(self) -> str:
        """Where the state key comes from: the OS keyring, or $KEYCTL_VIRTUAL_KEY (CI mode)."""
        return "os-keyring" if self._source == SOURCE_KEYRING else ENV_VIRTUAL_KEY

    def load(self) -> AuthenticatorState:
        with self._lock:
            return _unseal(self.name, self.path.read_bytes(), self._key)

    @contextmanager
    def transaction(self) -> Iterator[AuthenticatorState]:
        with self._lock:
            state = _unseal(self.name, self.path.read_bytes(), self._key)
            before = state.to_bytes()
            try:
                yield state
            except CtapFailure:  # a refused command may still count (PIN retries)
                self._save_if_changed(state, before)
                raise
            self._save_if_changed(state, before)

    def _save_if_changed(self, state: AuthenticatorState, before: bytes) -> None:
        if state.to_bytes() != before:
            atomic_write(self.path, _seal(self.name, state, self._key, self._source))


def require(name: str) -> Path:
    """The state file of an existing authenticator (NotFound otherwise); nothing is decrypted."""
    path = _state_path(name)
    if not path.exists():
        raise NotFound(
            f"no virtual authenticator named {name!r}",
            "'keyctl virtual list' shows them; 'keyctl virtual create NAME' makes one",
        )
    return path


def exists(name: str) -> bool:
    return _state_path(name).exists()


def create(name: str, state: AuthenticatorState, force: bool = False) -> None:
    """Store a new authenticator, encrypted with $KEYCTL_VIRTUAL_KEY if set, else a keyring secret."""
    check_name(name)
    with _lock(name):
        if exists(name) and not force:
            raise AlreadyExists(
                f"a virtual authenticator named {name!r} already exists",
                "choose another name, or delete it first with 'keyctl virtual delete'",
            )
        _remove_stale_temps(name)  # a create killed before its first save landed left one
        env_key = _env_key()
        if env_key is not None:
            key, source = env_key, SOURCE_ENV
        else:
            key, source = _keyring_key(name, create=True), SOURCE_KEYRING
        atomic_write(_state_path(name), _seal(name, state, key, source))


def names() -> list[str]:
    directory = virtual_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(".state")] for p in directory.glob("*.state") if _NAME.fullmatch(p.stem))


def remove(name: str) -> None:
    """Delete the state and its keyring secret; works without the key (even on a damaged file)."""
    path = require(name)
    from_keyring = path.read_bytes()[5:6] == bytes([SOURCE_KEYRING])
    if from_keyring:
        from keyctl import secrets

        secrets.delete_secret(_account(name))  # first: if the keyring fails, nothing is lost
    with _lock(name):
        _remove_stale_temps(name)
        path.unlink()
    _lock_path(name).unlink(missing_ok=True)


def export_blob(name: str) -> str:
    """The whole authenticator as one line for a CI secret (a secret itself: it holds the keys)."""
    state = FileStore(name).load()
    payload = cbor.encode({"name": name, "state": state.to_bytes()})
    return EXPORT_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def import_blob(blob: str, name: str | None = None, force: bool = False) -> str:
    """Store an exported authenticator (under ``name`` or its original name); returns the name."""
    text = blob.strip()
    bad = InvalidInput(
        "that is not a keyctl virtual authenticator export", "paste the whole 'keyctl virtual export' line"
    )
    if not text.startswith(EXPORT_PREFIX):
        raise bad
    try:
        payload = cbor.decode(_b64decode(text[len(EXPORT_PREFIX) :]))
        original, raw_state = payload["name"], payload["state"]
        state = AuthenticatorState.from_bytes(raw_state)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad from None
    target = check_name(name or original)
    create(target, state, force=force)
    return target
