"""Stored virtual authenticators whose state key lives in the OS keyring (a throwaway Secret Service)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from keyctl import secrets
from keyctl.authenticator import store
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from tests.authenticator import rp
from tests.conftest import Result

Cli = Callable[..., Result]


def test_keyring_mode_without_ci_key(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $KEYCTL_VIRTUAL_KEY the state key is a secret in the (real, test) Secret Service."""
    monkeypatch.delenv(store.ENV_VIRTUAL_KEY, raising=False)
    result = cli("virtual", "create", "desk")
    assert result.exit_code == 0, result.stderr
    registered = rp.register(open_device("virtual:desk"))
    assert registered.sign_count > 0
    account = "virtual-authenticator:desk"
    key = secrets.get_secret(account)
    assert key is not None
    assert key not in result.stdout + result.stderr
    # without its keyring secret the state cannot be opened
    secrets.delete_secret(account)
    missing = cli("virtual", "info", "desk")
    assert missing.exit_code == ExitCode.STATE
    assert "keyring" in missing.stderr
    secrets.set_secret(account, key)
    info = cli("virtual", "info", "desk", "--json")
    assert info.exit_code == 0
    assert json.loads(info.stdout)["state_key"] == "os-keyring"
    assert cli("virtual", "remove", "desk", "--yes").exit_code == 0
    assert secrets.get_secret(account) is None
