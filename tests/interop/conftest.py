"""The interop relying parties as real processes on loopback, one per server library, each started once
per test session: @simplewebauthn/server (Node, installed by `npm ci` from the committed lock file),
py_webauthn and python-fido2's Fido2Server (Python), and the webauthn Ruby gem (Debian's ruby-webauthn).
All speak the convention of profiles/interop.toml, so keyctl reaches each through that profile file."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
PROFILE = HERE / "profiles" / "interop.toml"
SIMPLEWEBAUTHN = HERE / "simplewebauthn"


def _npm_ci() -> None:
    """node_modules from the committed lock file, as a fresh CI machine needs it (kept out of git)."""
    installed = SIMPLEWEBAUTHN / "node_modules" / ".package-lock.json"
    lock = SIMPLEWEBAUTHN / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    # npm's own output is kept off stdout: the relying party may be started inside a test that is
    # reading a keyctl command's stdout.
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SIMPLEWEBAUTHN,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {SIMPLEWEBAUTHN}:\n{done.stdout}{done.stderr}")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    package = json.loads((SIMPLEWEBAUTHN / "node_modules/@simplewebauthn/server/package.json").read_text())
    ruby = subprocess.run(
        ["ruby", "-e", 'require "webauthn"; print WebAuthn::VERSION'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        "simplewebauthn": f"@simplewebauthn/server {package['version']}",
        "py_webauthn": f"webauthn (py_webauthn) {version('webauthn')}",
        "fido2": f"python-fido2 Fido2Server {version('fido2')}",
        "ruby": f"webauthn-ruby {ruby} (Debian ruby-webauthn)",
    }


COMMANDS: dict[str, list[str]] = {
    "simplewebauthn": ["node", str(SIMPLEWEBAUTHN / "server.mjs")],
    "py_webauthn": [sys.executable, "-m", "tests.interop.rp_py_webauthn"],
    "fido2": [sys.executable, "-m", "tests.interop.rp_fido2"],
    "ruby": ["ruby", str(HERE / "ruby" / "server.rb")],
}
LIBRARIES = tuple(COMMANDS)


@dataclass
class RelyingParty:
    library: str
    url: str
    process: subprocess.Popen[str]

    def control(self, **variant: Any) -> list[str]:
        """Options for the next registrations; the variant keys this library cannot express."""
        answer = httpx.post(self.url + "/control", json={"variant": variant}).json()
        unsupported: list[str] = answer["unsupported"]
        return unsupported


def _start(library: str) -> RelyingParty:
    if library == "simplewebauthn":
        _npm_ci()
    process = subprocess.Popen(
        COMMANDS[library],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("listening "):
        process.kill()
        raise RuntimeError(f"the {library} relying party did not start (said {line!r})")
    return RelyingParty(library, f"http://localhost:{int(line.split()[1])}", process)


@pytest.fixture(scope="session")
def relying_parties() -> Iterator[dict[str, RelyingParty]]:
    """Started on first use, stopped at the end of the session."""
    started: dict[str, RelyingParty] = {}

    class Lazy(dict[str, RelyingParty]):
        def __missing__(self, library: str) -> RelyingParty:
            started[library] = self[library] = _start(library)
            return started[library]

    yield Lazy()
    for rp in started.values():
        rp.process.terminate()
        rp.process.wait(10)


@pytest.fixture(scope="session")
def library_versions() -> dict[str, str]:
    _npm_ci()
    return _versions()
