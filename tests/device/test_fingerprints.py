"""keyctl key fingerprints: against the virtual authenticator's scripted sensor, served over UDP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from keyctl.authenticator import SampleStatus, ScriptedSensor, UvMode, VirtualAuthenticator, new_state
from keyctl.authenticator.store import ENV_VIRTUAL_KEY, new_ci_key
from keyctl.device.key import SecurityKey
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from keyctl.hid.udp import UdpServer
from tests.conftest import run_keyctl

PIN = "4821-good"


@pytest.fixture
def sensor() -> ScriptedSensor:
    return ScriptedSensor(samples_required=4)


@pytest.fixture
def authenticator(sensor: ScriptedSensor) -> VirtualAuthenticator:
    return VirtualAuthenticator(new_state(uv=UvMode.FINGERPRINT), pin_code=PIN, sensor=sensor)


def _serve(authenticator: VirtualAuthenticator) -> Iterator[str]:
    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    host, port = server.address
    yield f"udp:{host}:{port}"
    server.stop()


@pytest.fixture
def device_spec(authenticator: VirtualAuthenticator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TEST_PIN", PIN)
    yield from _serve(authenticator)


def _templates(authenticator: VirtualAuthenticator) -> list[tuple[str, str | None]]:
    with authenticator.store.transaction() as state:
        return [(t.template_id.hex(), t.name) for t in state.templates]


def _key(cli: Any, *args: str) -> Any:
    return cli("key", "fingerprints", *args)


def test_add_shows_each_sample_and_retakes_a_bad_one(
    cli: Any, device_spec: str, sensor: ScriptedSensor, authenticator: VirtualAuthenticator
) -> None:
    sensor.script(SampleStatus.GOOD, SampleStatus.GOOD, SampleStatus.TOO_FAST)
    added = _key(cli, "add", "--name", "left thumb", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert added.exit_code == 0, added.stderr
    progress = [line for line in added.stderr.splitlines() if line.startswith("sample")]
    assert progress == [
        "sample 1/4 good, 3 left",
        "sample 2/4 good, 2 left",
        "sample 3: too fast, try again",
        "sample 3/4 good, 1 left",
        "sample 4/4 good, 0 left",
    ]
    ((template_id, name),) = _templates(authenticator)
    assert name == "left thumb"
    assert template_id in added.stderr
    assert PIN not in added.stderr + added.stdout


def test_list_rename_delete(cli: Any, device_spec: str, authenticator: VirtualAuthenticator) -> None:
    empty = _key(cli, "list", "--device", device_spec, "--pin-env", "TEST_PIN", "--json")
    assert empty.exit_code == 0, empty.stderr
    assert json.loads(empty.stdout) == []
    first = _key(cli, "add", "--device", device_spec, "--pin-env", "TEST_PIN", "--json")
    second = _key(cli, "add", "--name", "index", "--device", device_spec, "--pin-env", "TEST_PIN", "--json")
    assert first.exit_code == second.exit_code == 0, first.stderr + second.stderr
    first_id = json.loads(first.stdout)["template_id"]
    assert json.loads(second.stdout)["name"] == "index"

    listed = json.loads(_key(cli, "list", "--device", device_spec, "--pin-env", "TEST_PIN", "--json").stdout)
    assert listed == [{"template_id": t, "name": n} for t, n in _templates(authenticator)]
    assert {f["name"] for f in listed} == {None, "index"}
    table = _key(cli, "list", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert first_id in table.stdout
    assert "index" in table.stdout

    renamed = _key(cli, "rename", first_id, "right ring", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert renamed.exit_code == 0, renamed.stderr
    assert (first_id, "right ring") in _templates(authenticator)

    refused = _key(cli, "delete", first_id, "--device", device_spec, "--pin-env", "TEST_PIN")
    assert refused.exit_code == ExitCode.CANCELED
    assert len(_templates(authenticator)) == 2
    deleted = _key(cli, "delete", first_id, "--yes", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert deleted.exit_code == 0, deleted.stderr
    assert "right ring" in deleted.stderr
    assert first_id not in {t for t, _ in _templates(authenticator)}
    assert len(_templates(authenticator)) == 1


def test_bad_input_changes_nothing(cli: Any, device_spec: str, authenticator: VirtualAuthenticator) -> None:
    assert (
        _key(cli, "add", "--name", "thumb", "--device", device_spec, "--pin-env", "TEST_PIN").exit_code == 0
    )
    ((template_id, _),) = _templates(authenticator)
    missing = _key(cli, "delete", "beef", "--yes", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "fingerprints list" in missing.stderr
    not_hex = _key(cli, "rename", "xyz", "a", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert not_hex.exit_code == ExitCode.INVALID_INPUT
    too_long = _key(cli, "rename", template_id, "n" * 33, "--device", device_spec, "--pin-env", "TEST_PIN")
    assert too_long.exit_code == ExitCode.INVALID_INPUT
    assert "at most 32 bytes" in too_long.stderr
    long_add = _key(cli, "add", "--name", "n" * 33, "--device", device_spec, "--pin-env", "TEST_PIN")
    assert long_add.exit_code == ExitCode.INVALID_INPUT
    assert _templates(authenticator) == [(template_id, "thumb")]


def test_wrong_pin_reports_attempts_left(
    cli: Any, device_spec: str, authenticator: VirtualAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PIN", "0000-bad")
    wrong = _key(cli, "add", "--device", device_spec, "--pin-env", "WRONG_PIN")
    assert wrong.exit_code == ExitCode.NOT_VERIFIED
    assert "7 attempts left" in wrong.stderr
    assert _templates(authenticator) == []


def test_a_sensor_timeout_cancels_the_enrollment(
    cli: Any, device_spec: str, sensor: ScriptedSensor, authenticator: VirtualAuthenticator
) -> None:
    sensor.script(SampleStatus.GOOD, None)
    timed_out = _key(cli, "add", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert timed_out.exit_code == ExitCode.TIMEOUT
    assert "sample 1/4 good, 3 left" in timed_out.stderr
    assert _templates(authenticator) == []
    assert authenticator.enrollment is None  # cancelled on the key, not left half done


def test_stopping_the_progress_early_cancels_on_the_key(
    device_spec: str, authenticator: VirtualAuthenticator
) -> None:
    key = SecurityKey(open_device(device_spec))
    progress = key.add_fingerprint(PIN)
    first = next(progress)
    assert (first.good, first.remaining, first.required) == (True, 3, 4)
    assert authenticator.enrollment is not None
    progress.close()
    assert authenticator.enrollment is None
    assert _templates(authenticator) == []


def test_a_key_without_a_sensor_is_not_supported(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PIN", PIN)
    for spec in _serve(VirtualAuthenticator(new_state(uv=UvMode.NONE), pin_code=PIN)):
        for args in (("list",), ("add",), ("delete", "beef", "--yes")):
            result = _key(cli, *args, "--device", spec, "--pin-env", "TEST_PIN")
            assert result.exit_code == ExitCode.NOT_SUPPORTED, args
            assert "bioEnroll" in result.stderr


def test_ci_enrolls_on_a_stored_virtual_key_without_a_terminal() -> None:
    env = {ENV_VIRTUAL_KEY: new_ci_key(), "CI_PIN": PIN}
    created = run_keyctl(["virtual", "create", "ci", "--uv", "fingerprint", "--pin-env", "CI_PIN"], env=env)
    assert created.exit_code == 0, created.stderr
    added = run_keyctl(
        ["key", "fingerprints", "add", "--name", "ci", "--device", "virtual:ci", "--pin-env", "CI_PIN"],
        env=env,
    )
    assert added.exit_code == 0, added.stderr
    assert "sample 4/4 good, 0 left" in added.stderr
    listed = run_keyctl(
        ["key", "fingerprints", "list", "--device", "virtual:ci", "--pin-env", "CI_PIN", "--json"], env=env
    )
    assert [f["name"] for f in json.loads(listed.stdout)] == ["ci"]
    info = run_keyctl(["key", "info", "--device", "virtual:ci", "--json"], env=env)
    assert json.loads(info.stdout)["options"]["bioEnroll"] is True


def test_ctrl_c_between_samples_cancels_on_the_key(
    cli: Any, device_spec: str, authenticator: VirtualAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyctl.cli.output import Terminal

    status = Terminal.status

    def interrupted(self: Terminal, message: str) -> None:
        status(self, message)
        if message.startswith("sample 2/"):
            raise KeyboardInterrupt

    monkeypatch.setattr(Terminal, "status", interrupted)
    result = _key(cli, "add", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert result.exit_code == ExitCode.CANCELED
    assert "nothing was enrolled" in result.stderr
    assert "sample 3/" not in result.stderr
    assert authenticator.enrollment is None
    assert _templates(authenticator) == []
