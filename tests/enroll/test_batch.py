"""keyctl enroll against the real reference server with three virtual keys over UDP."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from keyctl.device.key import SecurityKey
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from tests.enroll.conftest import PASSWORD, PIN, Rig

USERS = ("ann@example.com", "ben@example.com", "cat@example.com")


def _pin_set(spec: str) -> bool:
    device = open_device(spec)
    try:
        return SecurityKey(device).info().pin_set
    finally:
        device.close()


def test_a_batch_of_three(rig: Rig, enroll: Any, tmp_path: Path) -> None:
    for user in USERS:
        rig.server.create_user(user, PASSWORD)
    fresh, used, strict = rig.key(), rig.key(), rig.key(min_pin_length=10)
    # Ben's key was enrolled for him earlier (this sets its PIN too).
    earlier = enroll("--user", USERS[1], "--device", used, "--pin-env", "TEST_PIN")
    assert earlier.exit_code == 0, earlier.stderr
    [bens_passkey] = rig.passkeys()[USERS[1]]

    log = tmp_path / "enrollment.csv"
    result = enroll(
        *(a for u in USERS for a in ("--user", u)),
        *(a for d in (fresh, used, strict) for a in ("--device", d)),
        "--pin-env",
        "TEST_PIN",
        "--log",
        str(log),
    )
    # Cat's key needs a 10-character PIN: the first failure's exit code, after the whole batch.
    assert result.exit_code == ExitCode.PIN_POLICY, result.stderr
    assert "1 of 3 users not enrolled (first: cat@example.com: the new PIN is too short" in result.stderr

    rows = list(csv.DictReader(log.open(encoding="utf-8")))
    assert [(r["user"], r["result"]) for r in rows] == [
        (USERS[0], "enrolled"),
        (USERS[1], "already_registered"),
        (USERS[2], "failed"),
    ]
    assert [r["key"] for r in rows] == [fresh, used, strict]
    assert rows[1]["detail"] == "Passkey already registered for this device"
    assert "at least 10 characters" in rows[2]["detail"]
    for row, spec in zip(rows, (fresh, used, strict), strict=True):
        assert row["aaguid"] == rig.aaguids[spec]
        assert row["time"].endswith("Z")
    assert PIN not in log.read_text()

    passkeys = rig.passkeys()
    assert passkeys[USERS[0]] == [rows[0]["credential_id"]]  # the server has exactly what the log says
    assert passkeys[USERS[1]] == [bens_passkey]  # reported, not registered again
    assert passkeys[USERS[2]] == []
    assert rows[1]["credential_id"] == rows[2]["credential_id"] == ""
    assert _pin_set(fresh)
    assert not _pin_set(strict)  # nothing changed on the key that failed

    registered = [e for e in rig.audit() if e["event"] == "passkey_registered"]
    assert [(e["email"], e["detail"]["via"]) for e in registered] == [  # type: ignore[index]
        (USERS[1], "enrollment"),
        (USERS[0], "enrollment"),
    ]
    for number, user in enumerate(USERS, start=1):
        assert f"user {number} of 3: {user}" in result.stderr
    assert "1 enrolled, 1 already registered, 1 failed, of 3 users" in result.stderr
