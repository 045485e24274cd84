"""keyctl.secrets against the real (throwaway) Secret Service, python-keyring, and failing backends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import keyring
import pytest
import secretstorage

from keyctl import secrets
from keyctl.config import keyring_service
from keyctl.errors import InvalidInput, SecretStoreError

BACKENDS = ["auto", "secretservice", "keyring"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(secrets.ENV_KEYRING_BACKEND, request.param)
    return str(request.param)


def _items(account: str) -> list[tuple[str, dict[str, str]]]:
    """(label, attributes) of every Secret Service item for ``account`` under the test service."""
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        found = collection.search_items({"service": keyring_service(), "username": account})
        return [(item.get_label(), item.get_attributes()) for item in found]


def test_round_trip(backend: str) -> None:
    assert secrets.get_secret("alice") is None
    secrets.set_secret("alice", "s3cret ünïcode")
    assert secrets.get_secret("alice") == "s3cret ünïcode"
    secrets.set_secret("alice", "replaced")
    assert secrets.get_secret("alice") == "replaced"
    assert len(_items("alice")) == 1
    secrets.delete_secret("alice")
    assert secrets.get_secret("alice") is None
    secrets.delete_secret("alice")  # absent is not an error


def test_keyctl_writes_what_keyring_reads(backend: str) -> None:
    secrets.set_secret("bob", "written-by-keyctl")
    assert keyring.get_password(keyring_service(), "bob") == "written-by-keyctl"
    keyring.set_password(keyring_service(), "carol", "written-by-keyring")
    assert secrets.get_secret("carol") == "written-by-keyring"
    secrets.delete_secret("carol")
    assert keyring.get_password(keyring_service(), "carol") is None


def test_items_have_exactly_keyrings_attributes_and_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path must be indistinguishable from python-keyring's SecretService backend."""
    monkeypatch.setenv(secrets.ENV_KEYRING_BACKEND, "secretservice")
    keyring.set_password(keyring_service(), "by-keyring", "x")
    secrets.set_secret("by-keyctl", "y")
    [(label_k, attrs_k)] = _items("by-keyring")
    [(label_c, attrs_c)] = _items("by-keyctl")
    assert label_c == label_k.replace("by-keyring", "by-keyctl")
    # gnome-keyring itself sometimes adds xdg:schema to the first item of a fresh keyring: not the client's.
    assert _client_set(attrs_c) == {**_client_set(attrs_k), "username": "by-keyctl"}
    assert set(_client_set(attrs_c)) == {"application", "service", "username"}


def _client_set(attributes: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if not key.startswith("xdg:")}


def test_the_service_name_isolates_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.set_secret("dave", "one")
    monkeypatch.setenv("KEYCTL_KEYRING_SERVICE", keyring_service() + "-other")
    assert secrets.get_secret("dave") is None


class _Hanging:
    name = "a hanging test backend"

    def _hang(self, *args: str) -> None:
        time.sleep(30)

    get = set = delete = _hang

    def explain(self, error: BaseException) -> SecretStoreError:
        raise AssertionError("not reached")


def test_a_hanging_backend_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_backend", _Hanging)
    monkeypatch.setenv("KEYCTL_KEYRING_TIMEOUT", "0.3")
    started = time.monotonic()
    with pytest.raises(SecretStoreError, match=r"a hanging test backend did not answer within 0\.3 s") as e:
        secrets.set_secret("erin", "never-shown-value")
    assert time.monotonic() - started < 3
    assert "KEYCTL_KEYRING_TIMEOUT" in e.value.remedy
    assert "never-shown-value" not in str(e.value) + e.value.remedy


def test_unknown_backend_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.ENV_KEYRING_BACKEND, "plaintext")
    with pytest.raises(InvalidInput, match="KEYCTL_KEYRING_BACKEND"):
        secrets.get_secret("x")


_LOCKED_SCRIPT = """
import os, secretstorage
from keyctl import secrets
from keyctl.errors import SecretStoreError
secrets.set_secret("frank", "locked-away")
secretstorage.get_default_collection(secretstorage.dbus_init()).lock()
for name in ("auto", "keyring"):
    os.environ["KEYCTL_KEYRING_BACKEND"] = name
    try:
        secrets.get_secret("frank")
        print("read a locked keyring")
    except SecretStoreError as e:
        print(e.message + " | " + e.remedy)
"""


def test_a_locked_collection() -> None:
    """In a Secret Service session of its own (locking it must not disturb the other tests): headless,
    gnome-keyring cannot show its unlock prompt and dismisses it."""
    harness = Path(__file__).resolve().parents[1] / "scripts" / "with-secret-service.sh"
    proc = subprocess.run(
        ["dbus-run-session", "--", "bash", str(harness), sys.executable, "-c", _LOCKED_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert lines[0].startswith("the Secret Service")
    assert lines[1].startswith("python-keyring")
    for line in lines:
        assert "the keyring is locked" in line
        assert "unlock your keyring" in line
        assert "locked-away" not in line


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_no_dbus_session(backend_name: str) -> None:
    """For real: a process whose session bus address points at nothing."""
    env = {
        **os.environ,
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/keyctl-test-bus",
        secrets.ENV_KEYRING_BACKEND: backend_name,
    }
    code = (
        "from keyctl import secrets\n"
        "from keyctl.errors import SecretStoreError\n"
        "try:\n    secrets.set_secret('x', 'should-not-appear')\n"
        "except SecretStoreError as e:\n    print(e.message); print(e.remedy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message, remedy = proc.stdout.splitlines()
    expected = "python-keyring" if backend_name == "keyring" else "Secret Service"
    assert expected in message
    assert "D-Bus" in message or "no usable keyring backend" in message
    assert "should-not-appear" not in proc.stdout + proc.stderr
    assert "plain file" in remedy or "gnome-keyring-daemon" in remedy
