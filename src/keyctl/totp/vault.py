"""The TOTP vault: each secret is one OS-keyring entry (keyctl.secrets, account ``totp:NAME``), or in CI
mode (``$KEYCTL_TOTP_KEY`` set) one item of the encrypted file vault (keyctl.totp.filevault); the
non-secret index (names, parameters, HOTP counters) is ``totp.json`` in the data dir.

The index is written atomically under an exclusive lock, mode 0600. Changes are ordered so that a failure
leaves the vault as it was: the keyring is written first, then the index, and the keyring change is
rolled back when the index cannot be written (and the other way round for removals).
Reading a TOTP code takes no lock: the index is replaced by rename, so readers see the old or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Protocol

from keyctl import secrets
from keyctl.config import data_dir
from keyctl.errors import AlreadyExists, InvalidInput, NotFound, SecretStoreError, StateError
from keyctl.totp.codes import Code, hotp, totp
from keyctl.totp.model import Credential, Entry, check_name, check_parameters, decode_base32, encode_base32

INDEX_FILE = "totp.json"
LOCK_FILE = "totp.lock"
INDEX_VERSION = 1
ACCOUNT_PREFIX = "totp:"

_log = logging.getLogger(__name__)


class _Store(Protocol):
    def get_secret(self, account: str) -> str | None: ...
    def set_secret(self, account: str, value: str) -> None: ...
    def delete_secret(self, account: str) -> None: ...


def _store() -> _Store:
    """Where the secrets are: the OS keyring, or the encrypted file vault in CI mode."""
    from keyctl.totp import filevault

    key = filevault.env_key()
    return secrets if key is None else filevault.FileSecrets(key)


def store_name() -> str:
    from keyctl.totp import filevault

    return "the OS keyring" if filevault.env_key() is None else filevault.FileSecrets.name


_ENTRY_FIELDS = {f.name: f.type for f in fields(Entry)}


def account(name: str) -> str:
    """The keyring account holding the secret of entry ``name``."""
    return ACCOUNT_PREFIX + name


def index_path() -> Path:
    return data_dir() / INDEX_FILE


@contextmanager
def _locked(lock_file: str = LOCK_FILE) -> Iterator[None]:
    """An exclusive lock on the vault (index and its keyring entries), across processes."""
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _damaged(path: Path, why: str) -> StateError:
    return StateError(
        f"the TOTP index {path} is damaged ({why})",
        "restore it from a backup, or move it away and add the entries again",
    )


def _entry(raw: Any, path: Path) -> Entry:
    if not isinstance(raw, dict) or set(raw) != set(_ENTRY_FIELDS):
        raise _damaged(path, "an entry has missing or unknown fields")
    for key, value in raw.items():
        expected = int if _ENTRY_FIELDS[key] == "int" else str
        if type(value) is not expected:
            raise _damaged(path, f"field {key!r} has the wrong type")
    try:
        return check_parameters(Entry(**raw))
    except InvalidInput as error:
        raise _damaged(path, error.message) from None


def _read_index() -> dict[str, Entry]:
    path = index_path()
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise _damaged(path, "not JSON") from None
    except OSError as error:
        raise StateError(
            f"cannot read the TOTP index {path}: {error.strerror}", "check its permissions"
        ) from None
    if not isinstance(document, dict) or document.get("version") != INDEX_VERSION:
        raise _damaged(path, "unknown format version")
    entries = [_entry(raw, path) for raw in document.get("entries", [])]
    return {entry.name: entry for entry in entries}


def _write_index(index: dict[str, Entry]) -> None:
    from keyctl.fileio import atomic_write

    document = {"version": INDEX_VERSION, "entries": [asdict(entry) for entry in index.values()]}
    path = index_path()
    try:
        atomic_write(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"), mode=0o600)
    except OSError as error:
        raise StateError(
            f"cannot write the TOTP index {path}: {error.strerror}", "check the disk and permissions"
        ) from None


def _not_found(name: str) -> NotFound:
    return NotFound(f"no TOTP entry named {name!r}", "list the names with: keyctl totp list")


def _exists(name: str, replace_with: str) -> AlreadyExists:
    return AlreadyExists(
        f"a TOTP entry named {name!r} already exists", f"choose another name, or {replace_with}"
    )


def entries() -> list[Entry]:
    """Every entry of the vault (names and settings, no secrets), sorted by name."""
    return sorted(_read_index().values(), key=lambda entry: entry.name.casefold())


def get(name: str) -> Entry:
    """The entry ``name``; ``NotFound`` when there is none."""
    entry = _read_index().get(name)
    if entry is None:
        raise _not_found(name)
    return entry


def _secret(entry: Entry) -> bytes:
    stored = _store().get_secret(account(entry.name))
    if stored is None:
        raise StateError(
            f"the secret of TOTP entry {entry.name!r} is missing from {store_name()}",
            f"add it again with: keyctl totp add {entry.name} --force --secret",
        )
    try:
        return decode_base32(stored)
    except InvalidInput:
        raise StateError(
            f"the keyring entry of {entry.name!r} is not a base32 secret", "add it again"
        ) from None


def load(name: str) -> Credential:
    """The entry and its secret (for ``show``)."""
    entry = get(name)
    return Credential(entry, _secret(entry))


def _restore(name: str, previous: str | None) -> None:
    """Put the keyring entry of ``name`` back as it was (best effort: the original error wins)."""
    try:
        if previous is None:
            _store().delete_secret(account(name))
        else:
            _store().set_secret(account(name), previous)
    except SecretStoreError:
        _log.warning("could not roll back the keyring entry of %r", name)


def add(credential: Credential, force: bool = False) -> None:
    """Store a credential: its secret in the keyring (or the CI file vault), then its entry in the index;
    ``AlreadyExists`` for a taken name unless ``force``. A failure changes nothing."""
    entry = credential.entry
    check_name(entry.name)
    with _locked():
        index = _read_index()
        if entry.name in index and not force:
            raise _exists(entry.name, "pass --force to replace it")
        previous = _store().get_secret(account(entry.name)) if entry.name in index else None
        _store().set_secret(account(entry.name), encode_base32(credential.secret))
        try:
            _write_index({**index, entry.name: entry})
        except BaseException:
            _restore(entry.name, previous)
            raise
    _log.debug("added TOTP entry %r (%s)", entry.name, entry.describe())


def add_many(credentials: Iterable[Credential]) -> tuple[list[str], list[str]]:
    """Add every credential whose name is free: (names added, names skipped as duplicates)."""
    added: list[str] = []
    skipped: list[str] = []
    with _locked():
        index = _read_index()
        try:
            for credential in credentials:
                name = credential.entry.name
                if name in index:
                    skipped.append(name)
                    continue
                _store().set_secret(account(name), encode_base32(credential.secret))
                added.append(name)
                index[name] = credential.entry
            if added:
                _write_index(index)
        except BaseException:
            for name in added:
                _restore(name, None)
            raise
    _log.debug("imported %d TOTP entries, skipped %d", len(added), len(skipped))
    return added, skipped


def rename(old: str, new: str) -> None:
    """Rename an entry, its secret with it; never over an existing entry (``AlreadyExists``)."""
    check_name(new)
    with _locked():
        index = _read_index()
        if old not in index:
            raise _not_found(old)
        if new in index:
            raise _exists(new, f"delete that entry first: keyctl totp delete {new}")
        value = encode_base32(_secret(index[old]))
        renamed = {(new if name == old else name): entry for name, entry in index.items()}
        renamed[new] = replace(index[old], name=new)
        _store().set_secret(account(new), value)
        try:
            _write_index(renamed)
            try:
                _store().delete_secret(account(old))
            except BaseException:
                _write_index(index)
                raise
        except BaseException:
            _restore(new, None)
            raise
    _log.debug("renamed TOTP entry %r to %r", old, new)


def remove(name: str) -> None:
    """Delete an entry and its secret; ``NotFound`` when there is none."""
    with _locked():
        index = _read_index()
        if name not in index:
            raise _not_found(name)
        _write_index({key: entry for key, entry in index.items() if key != name})
        try:
            _store().delete_secret(account(name))
        except BaseException:
            _write_index(index)
            raise
    _log.debug("removed TOTP entry %r", name)


def totp_code(credential: Credential, now: float) -> Code:
    """The TOTP code of ``credential`` at Unix time ``now``, with the seconds it has left."""
    entry = credential.entry
    return totp(credential.secret, now, entry.period, entry.digits, entry.algorithm, entry.encoder)


def current_code(name: str, now: float | None = None) -> Code:
    """The code of entry ``name``. HOTP: the counter is advanced and saved before the code is returned."""
    entry = get(name)
    if entry.kind == "totp":
        return totp_code(Credential(entry, _secret(entry)), time.time() if now is None else now)
    with _locked():
        index = _read_index()
        if name not in index:
            raise _not_found(name)
        entry = index[name]
        code = hotp(_secret(entry), entry.counter, entry.digits, entry.algorithm, entry.encoder)
        _write_index({**index, name: replace(entry, counter=entry.counter + 1)})
    _log.debug("HOTP entry %r advanced to counter %d", name, entry.counter + 1)
    return Code(code=code, remaining=None, period=None, counter=entry.counter)
