"""Secrets in the OS keyring: one string per account, under keyctl's service name.

On Linux keyctl talks to the Secret Service through ``secretstorage`` directly (importing python-keyring
costs ~190 ms, too much for ``keyctl totp code``) and stores items with exactly the attributes and label
of python-keyring's SecretService backend, so ``keyring get SERVICE ACCOUNT`` and keyctl read the same
entries. On other systems, with ``KEYCTL_KEYRING_BACKEND=keyring``, or when python-keyring is configured
to use another backend (``PYTHON_KEYRING_BACKEND`` or a ``keyringrc.cfg``), keyctl goes through
python-keyring itself. Every call runs in a daemon thread and is abandoned after ``keyring_timeout()``
seconds, because some backends hang. There is no plaintext fallback, ever.

Transport: keyctl opens a "plain" Secret Service session where python-keyring negotiates Diffie-Hellman
and AES. The DH exchange costs ~45 ms per call and protects the secret only from processes of the same
user on the same session bus, which can read every item of the unlocked collection anyway. Services that
refuse plain sessions get the encrypted one.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol, TypeVar

from keyctl.config import keyring_service, keyring_timeout
from keyctl.errors import InvalidInput, SecretStoreError

ENV_KEYRING_BACKEND = "KEYCTL_KEYRING_BACKEND"
BACKEND_CHOICES = ("auto", "secretservice", "keyring")

# python-keyring's SecretService backend: attribute names of its "default" scheme, its appid, its label.
_KEYRING_APPID = "Python keyring library"

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_NO_BUS_FIX = (
    "run keyctl in a desktop session with an unlocked keyring; on a headless machine start one: "
    'dbus-run-session -- sh -c \'printf %s "$PW" | gnome-keyring-daemon --unlock --components=secrets; '
    "keyctl ...'"
)
_LOCKED_FIX = "unlock your keyring (log in to the desktop, or: gnome-keyring-daemon --unlock) and retry"


class _Backend(Protocol):
    name: str

    def get(self, service: str, account: str) -> str | None: ...
    def set(self, service: str, account: str, value: str) -> None: ...
    def delete(self, service: str, account: str) -> None: ...
    def explain(self, error: BaseException) -> SecretStoreError: ...


_SS_PATH = "/org/freedesktop/secrets"
_SS_SERVICE = "org.freedesktop.Secret.Service"


class _PlainSession:
    """What secretstorage needs of a session object, for the "plain" algorithm."""

    encrypted = False
    aes_key = None

    def __init__(self, object_path: str) -> None:
        self.object_path = object_path


class _SecretService:
    """The freedesktop Secret Service (gnome-keyring, KWallet 6, KeePassXC) over D-Bus via secretstorage."""

    name = "the Secret Service (D-Bus, via secretstorage)"

    def __init__(self) -> None:
        import secretstorage

        self._ss = secretstorage

    def _plain_session(self, connection: Any) -> Any:
        """A session without transport encryption (see the module docstring), or else secretstorage's."""
        from jeepney import DBusErrorResponse
        from secretstorage.util import DBusAddressWrapper

        service = DBusAddressWrapper(_SS_PATH, _SS_SERVICE, connection)
        try:
            _output, path = service.call("OpenSession", "sv", "plain", ("s", ""))
        except DBusErrorResponse:
            return self._ss.util.open_session(connection)
        return _PlainSession(path)

    def _collection(self, connection: Any) -> Any:
        collection = self._ss.get_default_collection(connection)
        collection.session = self._plain_session(connection)
        if collection.is_locked():
            collection.unlock()  # shows the desktop's unlock prompt where there is one
            if collection.is_locked():
                raise self._ss.LockedException("the default collection is locked")
        return collection

    def _items(self, connection: Any, service: str, account: str) -> list[Any]:
        return list(self._collection(connection).search_items({"username": account, "service": service}))

    def get(self, service: str, account: str) -> str | None:
        with closing(self._ss.dbus_init()) as connection:
            for item in self._items(connection, service, account):
                if item.is_locked():
                    item.unlock()
                    if item.is_locked():
                        raise self._ss.LockedException("the item is locked")
                value: bytes = item.get_secret()
                return value.decode("utf-8")
        return None

    def set(self, service: str, account: str, value: str) -> None:
        attributes = {"username": account, "service": service, "application": _KEYRING_APPID}
        label = f"Password for '{account}' on '{service}'"
        with closing(self._ss.dbus_init()) as connection:
            self._collection(connection).create_item(label, attributes, value.encode("utf-8"), replace=True)

    def delete(self, service: str, account: str) -> None:
        with closing(self._ss.dbus_init()) as connection:
            for item in self._items(connection, service, account):
                item.delete()

    def explain(self, error: BaseException) -> SecretStoreError:
        exceptions = self._ss.exceptions
        if isinstance(error, exceptions.LockedException | exceptions.PromptDismissedException):
            return SecretStoreError(f"{self.name}: the keyring is locked ({error})", _LOCKED_FIX)
        if isinstance(error, OSError):
            return SecretStoreError(
                f"{self.name}: cannot connect to the D-Bus session bus ({error})", _NO_BUS_FIX
            )
        if isinstance(error, exceptions.SecretServiceNotAvailableException):
            return SecretStoreError(f"{self.name} is not available: {error}", _NO_BUS_FIX)
        return SecretStoreError(
            f"{self.name} failed: {type(error).__name__}: {error}",
            f"check that the keyring daemon runs and is unlocked, or set {ENV_KEYRING_BACKEND}=keyring",
        )


class _PythonKeyring:
    """python-keyring with whatever backend it selects (macOS Keychain, Windows Credential Locker, ...)."""

    def __init__(self) -> None:
        import keyring
        import keyring.errors

        self._keyring = keyring
        self._errors = keyring.errors
        self.name = "python-keyring"

    def _backend(self) -> Any:
        backend = self._keyring.get_keyring()  # resolving the backend may talk to D-Bus: inside the thread
        self.name = f"python-keyring (backend {type(backend).__module__}.{type(backend).__qualname__})"
        return backend

    def get(self, service: str, account: str) -> str | None:
        value: str | None = self._backend().get_password(service, account)
        return value

    def set(self, service: str, account: str, value: str) -> None:
        self._backend().set_password(service, account, value)

    def delete(self, service: str, account: str) -> None:
        backend = self._backend()
        try:
            backend.delete_password(service, account)
        except self._errors.PasswordDeleteError:
            if backend.get_password(service, account) is not None:
                raise

    def explain(self, error: BaseException) -> SecretStoreError:
        errors = self._errors
        if isinstance(error, errors.KeyringLocked):
            return SecretStoreError(f"{self.name}: the keyring is locked ({error})", _LOCKED_FIX)
        if isinstance(error, errors.NoKeyringError):
            return SecretStoreError(
                f"{self.name} found no usable keyring backend",
                "install and unlock an OS keyring (Secret Service, macOS Keychain, Windows Credential "
                "Locker); keyctl never stores secrets in a plain file",
            )
        if isinstance(error, RuntimeError | errors.InitError):
            return SecretStoreError(f"{self.name} is not available: {error}", _NO_BUS_FIX)
        return SecretStoreError(
            f"{self.name} failed: {type(error).__name__}: {error}",
            "check that your OS keyring runs and is unlocked",
        )


def _keyring_is_configured() -> bool:
    """True when the user told python-keyring to use a particular backend (keyctl then follows it)."""
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return True
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root, "python_keyring", "keyringrc.cfg").exists()


def _backend() -> _Backend:
    choice = (os.environ.get(ENV_KEYRING_BACKEND) or "auto").lower()
    if choice not in BACKEND_CHOICES:
        raise InvalidInput(
            f"{ENV_KEYRING_BACKEND}={choice!r} is not a keyring backend keyctl knows",
            f"use one of {', '.join(BACKEND_CHOICES)}",
        )
    use_secret_service = choice == "secretservice" or (
        choice == "auto" and sys.platform.startswith("linux") and not _keyring_is_configured()
    )
    try:
        return _SecretService() if use_secret_service else _PythonKeyring()
    except ImportError as error:
        wanted = "secretstorage" if use_secret_service else "keyring"
        raise SecretStoreError(
            f"the Python package {wanted!r} is missing, so keyctl cannot reach the OS keyring",
            f"reinstall keyctl (pip install keyctl) so that {wanted} is installed",
        ) from error


def _bounded(what: str, call: Callable[[_Backend], _T]) -> _T:
    """Run ``call`` on the backend in a daemon thread; give up after keyring_timeout() seconds."""
    timeout = keyring_timeout()
    backend = _backend()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call(backend)
        except BaseException as error:  # handed to the calling thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, name=f"keyctl-keyring-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise SecretStoreError(
            f"{backend.name} did not answer within {timeout:g} s ({what})",
            "check for an unlock prompt or a stuck keyring daemon; raise the limit with "
            "KEYCTL_KEYRING_TIMEOUT=SECONDS",
        )
    if "error" in outcome:
        error = outcome["error"]
        _log.debug("keyring %s failed with %s", what, type(error).__name__)
        if isinstance(error, Exception):
            raise backend.explain(error) from error
        raise error
    value: _T = outcome["value"]
    return value


def get_secret(account: str) -> str | None:
    """The secret stored for ``account``, or None when there is none."""
    service = keyring_service()
    return _bounded("read", lambda backend: backend.get(service, account))


def set_secret(account: str, value: str) -> None:
    """Store (or replace) the secret of ``account``."""
    service = keyring_service()
    _bounded("write", lambda backend: backend.set(service, account, value))


def delete_secret(account: str) -> None:
    """Remove the secret of ``account``; an absent entry is not an error."""
    service = keyring_service()
    _bounded("delete", lambda backend: backend.delete(service, account))
