"""A python-keyring backend that never answers (like KeePassXC's Secret Service sometimes), for
PYTHON_KEYRING_BACKEND=tests.totp.hanging_keyring.HangingKeyring in subprocess tests."""

from __future__ import annotations

import time

from keyring.backend import KeyringBackend


class HangingKeyring(KeyringBackend):
    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        time.sleep(3600)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        time.sleep(3600)

    def delete_password(self, service: str, username: str) -> None:
        time.sleep(3600)
