"""The enrollment session as keyctl uses it: registration for its one user only, and it expires."""

from __future__ import annotations

import pytest

from keyctl.enroll import pins
from keyctl.enroll.batch import Batch, FixedKeys, enroll_user, open_enrollment
from keyctl.errors import ExitCode, SessionExpired, SignInFailed
from keyctl.webauthn import profile
from keyctl.webauthn.session import Session
from tests.enroll.conftest import PASSWORD, PIN, Rig

ANN = "ann@example.com"


class Recorder:
    """Prompts for the Python API: records what the technician would see; a hook runs at the PIN."""

    def __init__(self, at_new_pin: object = None) -> None:
        self.said: list[str] = []
        self.generated: list[tuple[str, str]] = []
        self.at_new_pin = at_new_pin

    def say(self, message: str) -> None:
        self.said.append(message)

    def new_pin(self, user: str) -> str:
        if callable(self.at_new_pin):
            self.at_new_pin()
        return PIN

    def existing_pin(self, user: str) -> str | None:
        return PIN

    def generated_pin(self, user: str, pin: str) -> None:
        self.generated.append((user, pin))

    def touch(self) -> None:
        self.said.append("touch")


def batch(rig: Rig, spec: str, prompts: Recorder, policy: pins.Policy | None = None) -> Batch:
    return Batch(
        server=rig.server.url,
        profile=profile.load("keyctl"),
        origin=rig.server.url,
        admin_token=rig.server.admin_token,
        keys=FixedKeys([spec]),
        prompts=prompts,
        pin_policy=policy or pins.Policy(),
    )


def test_the_session_can_only_register_for_its_user(rig: Rig) -> None:
    rig.server.create_user(ANN, PASSWORD)
    rig.server.create_user("ben@example.com", PASSWORD)
    with Session(rig.server.url, profile.load("keyctl"), rig.server.url) as session:
        open_enrollment(session, rig.server.admin_token, ANN)
        for path in ("/api/me", "/api/passkeys"):
            with pytest.raises(SignInFailed, match="can only register a passkey"):
                session.call("GET", path)
        options = session.call("POST", "/api/passkeys/register/options", {})
    assert options["user"]["name"] == ANN


def test_a_wrong_admin_token_enrolls_nobody(rig: Rig) -> None:
    rig.server.create_user(ANN, PASSWORD)
    with (
        Session(rig.server.url, profile.load("keyctl"), rig.server.url) as session,
        pytest.raises(SignInFailed, match="Bearer"),
    ):
        open_enrollment(session, "not-the-token", ANN)


def test_a_session_left_waiting_too_long_expires(rig: Rig) -> None:
    rig.server.create_user(ANN, PASSWORD)
    spec = rig.key()

    def technician_goes_for_coffee() -> None:
        rig.clock.offset += 5 * 60 + 1

    record, error = enroll_user(batch(rig, spec, Recorder(technician_goes_for_coffee)), 0, ANN)
    assert isinstance(error, SessionExpired)
    assert error.exit_code == ExitCode.SESSION_EXPIRED
    assert record.result == "failed"
    assert record.detail.startswith("Session expired")
    assert rig.passkeys() == {ANN: []}


def test_generated_pins_are_shown_once_and_set_on_the_key(rig: Rig) -> None:
    from keyctl.device.key import SecurityKey
    from keyctl.hid import open_device

    rig.server.create_user(ANN, PASSWORD)
    spec = rig.key(min_pin_length=9)
    prompts = Recorder()
    record, error = enroll_user(batch(rig, spec, prompts, pins.Policy(source="generate")), 0, ANN)
    assert error is None, record
    assert record.result == "enrolled"
    [(user, pin)] = prompts.generated
    assert user == ANN
    assert pin.isdigit()
    assert len(pin) == 9  # the key's minimum wins over the policy's 8
    device = open_device(spec)
    try:
        SecurityKey(device).verify_pin(pin)  # raises if the key's PIN is another one
    finally:
        device.close()
    assert pin not in repr(record)
