"""Helpers for the TOTP tests: oathtool as the independent verifier, stdin for in-process runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from keyctl.config import data_dir
from keyctl.totp.model import encode_base32


def oathtool(
    secret: bytes,
    *,
    at: int | None = None,
    algorithm: str = "SHA1",
    digits: int = 6,
    period: int = 30,
    counter: int | None = None,
) -> str:
    """The code Debian's oathtool computes (TOTP at ``at``, or HOTP at ``counter``)."""
    mode = (
        ["--hotp", "-c", str(counter)]
        if counter is not None
        else [f"--totp={algorithm}", "-s", f"{period}s", "--now", f"@{at}"]
    )
    proc = subprocess.run(
        ["oathtool", *mode, "-d", str(digits), "-b", encode_base32(secret)],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    return proc.stdout.strip()


def index_bytes() -> bytes | None:
    path = data_dir() / "totp.json"
    return path.read_bytes() if path.exists() else None


def index_names() -> list[str]:
    raw = index_bytes()
    return [] if raw is None else [entry["name"] for entry in json.loads(raw)["entries"]]


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Give in-process keyctl runs a non-terminal stdin with this text."""

    def feed(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))

    return feed


REPO = Path(__file__).resolve().parents[2]
