"""The enrollment log's formats, refusals before anything is touched, and the 5-passkey limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyctl.enroll import log as enrollment_log
from keyctl.errors import ExitCode, StateError
from keyctl.server.policy import MAX_PASSKEYS
from tests.enroll.conftest import PASSWORD, Rig
from tests.enroll.test_batch import _pin_set
from tests.server.softauth import SoftAuthenticator

ANN = "ann@example.com"


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_logs_are_appended_run_after_run(rig: Rig, enroll: Any, tmp_path: Path, suffix: str) -> None:
    rig.server.create_user(ANN, PASSWORD)
    log = tmp_path / f"enrollment{suffix}"
    specs = [rig.key(), rig.key()]
    for spec in specs:
        result = enroll("--user", ANN, "--device", spec, "--pin-env", "TEST_PIN", "--log", str(log))
        assert result.exit_code == 0, result.stderr
    text = log.read_text()
    records = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    assert [(r["user"], r["result"], r["key"]) for r in records] == [(ANN, "enrolled", s) for s in specs]
    assert [r["credential_id"] for r in records] == rig.passkeys()[ANN]
    assert set(records[0]) == set(enrollment_log.FIELDS)
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_bad_log_is_refused_before_any_key_is_touched(rig: Rig, enroll: Any, tmp_path: Path) -> None:
    rig.server.create_user(ANN, PASSWORD)
    spec = rig.key()
    wrong = enroll("--user", ANN, "--device", spec, "--pin-env", "TEST_PIN", "--log", str(tmp_path / "a.txt"))
    assert wrong.exit_code == ExitCode.INVALID_INPUT
    assert "unknown format '.txt'" in wrong.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    corrupt = enroll("--user", ANN, "--device", spec, "--pin-env", "TEST_PIN", "--log", str(broken))
    assert corrupt.exit_code == ExitCode.STATE
    assert broken.read_text() == "{not json"
    assert not _pin_set(spec)
    assert rig.passkeys() == {ANN: []}
    assert not [e for e in rig.audit() if e["event"] == "enrollment_session_created"]


def test_a_json_log_that_is_not_an_array_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    path.write_text('{"a": 1}')
    with pytest.raises(StateError):
        enrollment_log.check_path(path)


def test_the_sixth_passkey_is_refused_before_the_key_gets_a_pin(
    rig: Rig, enroll: Any, tmp_path: Path
) -> None:
    rig.server.create_user(ANN, PASSWORD)
    with rig.admin() as admin:
        for _ in range(MAX_PASSKEYS):
            session = admin.post(f"/api/admin/users/{ANN}/enrollment", json={})
            http = httpx.Client(base_url=rig.server.url, cookies=session.cookies)
            options = http.post("/api/passkeys/register/options", json={}).json()
            done = http.post(
                "/api/passkeys/register/verify", json=SoftAuthenticator(rig.server.url).create(options)
            )
            assert done.status_code == 200, done.text
    spec = rig.key()
    log = tmp_path / "log.csv"
    result = enroll("--user", ANN, "--device", spec, "--pin-env", "TEST_PIN", "--log", str(log))
    assert result.exit_code == ExitCode.PASSKEY_LIMIT, result.stderr
    assert "Passkey limit reached" in result.stderr
    assert "Passkey limit reached" in log.read_text()
    assert len(rig.passkeys()[ANN]) == MAX_PASSKEYS
    assert not _pin_set(spec)
