"""CI mode of the TOTP vault: with ``$KEYCTL_TOTP_KEY`` set, the secrets live in one encrypted file
instead of the OS keyring (a CI runner has no Secret Service), as ``$KEYCTL_VIRTUAL_KEY`` does for
stored virtual authenticators.

File ``totp-secrets.enc`` in the data dir, mode 0600, written atomically (the vault's lock is held by
every writer): ``MAGIC || nonce(12) || AES-256-GCM(key, nonce, JSON {account: base32 secret}, aad=MAGIC)``.
The index (names, parameters) stays ``totp.json``, as in keyring mode.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from keyctl.config import data_dir
from keyctl.errors import InvalidInput, StateError

ENV_TOTP_KEY = "KEYCTL_TOTP_KEY"
FILE_NAME = "totp-secrets.enc"
MAGIC = b"KCTV\x01"


def new_key() -> str:
    """A fresh value for $KEYCTL_TOTP_KEY (base64url of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def env_key() -> bytes | None:
    """The file vault's key, or None when $KEYCTL_TOTP_KEY is unset (keyring mode)."""
    raw = os.environ.get(ENV_TOTP_KEY, "").strip()
    if not raw:
        return None
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidInput(
            f"${ENV_TOTP_KEY} is not base64url of 32 bytes",
            "generate one with 'keyctl totp ci-key' and store it as a CI secret",
        )
    return key


def path() -> Path:
    return data_dir() / FILE_NAME


class FileSecrets:
    """get/set/delete_secret like keyctl.secrets, over the encrypted file."""

    name = f"the encrypted TOTP file vault (${ENV_TOTP_KEY})"

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _read(self) -> dict[str, str]:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        where = path()
        try:
            raw = where.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise StateError(f"cannot read {where}: {error.strerror}", "check its permissions") from None
        if raw[: len(MAGIC)] != MAGIC or len(raw) < len(MAGIC) + 12 + 16:
            raise StateError(
                f"{where} is not a keyctl TOTP file vault", "move it away and add the entries again"
            )
        nonce, sealed = raw[len(MAGIC) : len(MAGIC) + 12], raw[len(MAGIC) + 12 :]
        try:
            plain = AESGCM(self._key).decrypt(nonce, sealed, MAGIC)
        except InvalidTag:
            raise StateError(
                f"{where} cannot be decrypted with ${ENV_TOTP_KEY}",
                f"set ${ENV_TOTP_KEY} to the key the vault was written with",
            ) from None
        document = json.loads(plain)
        if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
            raise StateError(f"{where} holds an unknown format", "move it away and add the entries again")
        return document

    def _write(self, secrets: dict[str, str]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from keyctl.fileio import atomic_write

        nonce = os.urandom(12)
        sealed = AESGCM(self._key).encrypt(nonce, json.dumps(secrets).encode(), MAGIC)
        try:
            atomic_write(path(), MAGIC + nonce + sealed, mode=0o600)
        except OSError as error:
            raise StateError(
                f"cannot write {path()}: {error.strerror}", "check the disk and permissions"
            ) from None

    def get_secret(self, account: str) -> str | None:
        return self._read().get(account)

    def set_secret(self, account: str, value: str) -> None:
        self._write({**self._read(), account: value})

    def delete_secret(self, account: str) -> None:
        secrets = self._read()
        if secrets.pop(account, None) is not None:
            self._write(secrets)

    def check(self) -> int:
        """How many secrets the file holds (raises StateError when it cannot be read)."""
        return len(self._read())
