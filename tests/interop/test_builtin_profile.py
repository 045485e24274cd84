"""keyctl's built-in `simplewebauthn` profile against the real library: the routes of SimpleWebAuthn's
own example app, served by tests/interop/simplewebauthn/server.mjs with @simplewebauthn/server 14. This
is the setup of issue #13's report (an empty user.displayName, the library's default)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from keyctl.errors import ExitCode
from keyctl.hid.udp import UdpServer
from tests.interop import matrix
from tests.interop.conftest import RelyingParty


def test_register_and_log_in_through_the_builtin_profile(
    relying_parties: dict[str, RelyingParty], cli: Callable[..., Any]
) -> None:
    rp = relying_parties["simplewebauthn"]
    server = UdpServer(matrix.key(), "127.0.0.1", 0).start()
    host, port = server.address
    device = f"udp:{host}:{port}"
    common = ("--server", rp.url, "--profile", "simplewebauthn", "--authenticator", device, "--json")
    try:
        registered = cli("register", "--user", "user@localhost", *common)
        assert registered.exit_code == 0, registered.stderr
        logged_in = cli("login", "--user", "user@localhost", *common)
        assert logged_in.exit_code == 0, logged_in.stderr
        again = cli("register", "--user", "user@localhost", *common)  # the example app excludes it
    finally:
        server.stop()
    assert json.loads(registered.stdout)["server"] == {"verified": True}
    assert json.loads(logged_in.stdout)["credential_id"] == json.loads(registered.stdout)["credential_id"]
    assert again.exit_code == ExitCode.CREDENTIAL_EXCLUDED, again.stderr
    assert "Passkey already registered for this device" in again.stderr
