"""Where keyctl keeps its files, and the environment variables that move them.

Paths are resolved on each call (not at import) so tests and CI can redirect them with environment
variables. ``platformdirs`` is imported lazily: it costs ~35 ms and the fast paths must not pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from keyctl.errors import InvalidInput

APP_NAME = "keyctl"

ENV_DATA_DIR = "KEYCTL_DATA_DIR"
ENV_CONFIG_DIR = "KEYCTL_CONFIG_DIR"
ENV_CACHE_DIR = "KEYCTL_CACHE_DIR"
ENV_KEYRING_SERVICE = "KEYCTL_KEYRING_SERVICE"
ENV_KEYRING_TIMEOUT = "KEYCTL_KEYRING_TIMEOUT"

DEFAULT_KEYRING_SERVICE = "keyctl"
DEFAULT_KEYRING_TIMEOUT_S = 10.0


def _dir(env_var: str, kind: str) -> Path:
    override = os.environ.get(env_var)
    if override:
        return Path(override)
    import platformdirs

    resolver = {
        "data": platformdirs.user_data_dir,
        "config": platformdirs.user_config_dir,
        "cache": platformdirs.user_cache_dir,
    }[kind]
    return Path(resolver(APP_NAME, appauthor=False))


def data_dir() -> Path:
    return _dir(ENV_DATA_DIR, "data")


def config_dir() -> Path:
    return _dir(ENV_CONFIG_DIR, "config")


def cache_dir() -> Path:
    return _dir(ENV_CACHE_DIR, "cache")


def keyring_service() -> str:
    """The keyring service name under which keyctl stores secrets (tests isolate themselves with it)."""
    return os.environ.get(ENV_KEYRING_SERVICE) or DEFAULT_KEYRING_SERVICE


def keyring_timeout() -> float:
    """Seconds a keyring call may take before keyctl gives up on it (some backends hang)."""
    raw = os.environ.get(ENV_KEYRING_TIMEOUT)
    if not raw:
        return DEFAULT_KEYRING_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidInput(
            f"{ENV_KEYRING_TIMEOUT}={raw!r} is not a positive number of seconds",
            f"set {ENV_KEYRING_TIMEOUT} to e.g. 10, or unset it",
        )
    return value
