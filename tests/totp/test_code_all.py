"""`keyctl totp code` without a name: every TOTP entry's code (as `ykman oath accounts code`), checked
against Debian's oathtool; HOTP entries listed without a code (one would use up a counter value)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from keyctl.totp.model import encode_base32
from tests.conftest import Result
from tests.totp.conftest import oathtool

Cli = Callable[..., Result]


def test_totp_code_without_a_name_prints_every_code(cli: Cli, stdin: Callable[[str], None]) -> None:
    secrets = {"alpha": b"12345678901234567890", "beta": b"abcdefghijabcdefghij"}
    for name, secret in secrets.items():
        stdin(encode_base32(secret) + "\n")
        assert cli("totp", "add", name, "--secret").exit_code == 0
    stdin("GEZDGNBVGY3TQOJQ\n")
    assert cli("totp", "add", "counter", "--secret", "--hotp").exit_code == 0
    before = int(time.time())
    result = cli("totp", "code", "--json")
    after = int(time.time())
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name, secret in secrets.items():
        assert rows[name]["code"] in {oathtool(secret, at=before), oathtool(secret, at=after)}
    assert rows["counter"]["code"] is None  # an HOTP code is asked for by name (it uses up a counter)
    table = cli("totp", "code")
    assert (
        rows["alpha"]["code"] in table.stdout
        or oathtool(secrets["alpha"], at=int(time.time())) in table.stdout
    )
