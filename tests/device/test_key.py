"""keyctl key: every operation against the virtual authenticator, in-process and over UDP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap2.base import Ctap2
from fido2.webauthn import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
)

from keyctl.authenticator import VirtualAuthenticator, new_state, store
from keyctl.authenticator.ports import FakeClock
from keyctl.errors import ExitCode
from keyctl.hid.udp import UdpServer

PIN = "4821-good"


class _Pin(UserInteraction):
    def request_pin(self, permissions: Any, rd_id: str | None) -> str:
        return PIN


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authenticator(clock: FakeClock) -> VirtualAuthenticator:
    return VirtualAuthenticator(clock=clock)


@pytest.fixture
def device_spec(authenticator: VirtualAuthenticator) -> Iterator[str]:
    """The key as a UDP simulator on loopback, so the CLI reaches it with --device udp:HOST:PORT."""
    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    host, port = server.address
    yield f"udp:{host}:{port}"
    server.stop()


def _register(spec: str, rp_id: str, user: str) -> bytes:
    from keyctl.hid import open_device

    client = Fido2Client(
        open_device(spec), DefaultClientDataCollector(f"https://{rp_id}"), user_interaction=_Pin()
    )
    result = client.make_credential(
        PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(id=rp_id, name=rp_id),
            user=PublicKeyCredentialUserEntity(id=user.encode(), name=user, display_name=user.title()),
            challenge=os.urandom(32),
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED
            ),
        )
    )
    return bytes(result.raw_id)


@pytest.fixture(params=["udp", "in-process"])
def spec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The key over UDP, or a stored virtual authenticator reached in-process (``virtual:NAME``): each
    keyctl command then powers it up afresh, as re-plugging a USB key would."""
    if request.param == "udp":
        spec: str = request.getfixturevalue("device_spec")
        return spec
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", store.new_ci_key())
    store.create("k", new_state())
    return "virtual:k"


@pytest.fixture
def pin_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_pins(pin: str, new_pin: str | None = None) -> None:
        monkeypatch.setenv("TEST_PIN", pin)
        if new_pin is not None:
            monkeypatch.setenv("TEST_NEW_PIN", new_pin)

    return set_pins


def test_info_of_a_fresh_key(cli: Any, spec: str) -> None:
    result = cli("key", "info", "--device", spec, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert "FIDO_2_1" in info["versions"]
    assert info["pin_set"] is False
    assert info["options"]["credMgmt"] is True
    assert "ES256" in info["algorithms"]
    table = cli("key", "info", "--device", spec)
    assert info["aaguid"] in table.stdout
    assert "not set" in table.stdout


def test_pin_set_then_retries_and_verify(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    assert cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN").exit_code == 0
    retries = cli("key", "pin", "retries", "--device", spec, "--json")
    assert json.loads(retries.stdout) == {"pin_retries": 8, "reinsert_needed": False}
    assert cli("key", "pin", "verify", "--device", spec, "--pin-env", "TEST_PIN").exit_code == 0
    again = cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    assert again.exit_code == ExitCode.INVALID_INPUT
    assert "already has a PIN" in again.stderr


def test_retries_of_a_key_without_a_pin(cli: Any, spec: str) -> None:
    """A key without a PIN answers getPINRetries with PIN_NOT_SET, as real keys do (issue #23 item 5)."""
    result = cli("key", "pin", "retries", "--device", spec, "--json")
    assert result.exit_code == ExitCode.PIN_NOT_SET
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: the key has no PIN yet",
        "  fix: set one first: 'keyctl key pin set'",
    ]


@pytest.mark.parametrize(("bad_pin", "reason"), [("abc", "too short"), ("x" * 64, "too long")])
def test_pin_policy_is_checked_before_sending(
    cli: Any, spec: str, pin_env: Any, bad_pin: str, reason: str
) -> None:
    pin_env(bad_pin)
    result = cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    assert result.exit_code == ExitCode.PIN_POLICY
    assert reason in result.stderr
    assert bad_pin not in result.stderr
    assert json.loads(cli("key", "info", "--device", spec, "--json").stdout)["pin_set"] is False


def test_wrong_pins_count_down_then_block(
    cli: Any, device_spec: str, pin_env: Any, authenticator: VirtualAuthenticator
) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", device_spec, "--pin-env", "TEST_PIN")
    pin_env("wrong-pin-1")
    first = cli("key", "pin", "verify", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert first.exit_code == ExitCode.NOT_VERIFIED
    assert "7 attempts left" in first.stderr
    assert "wrong-pin-1" not in first.stderr
    cli("key", "pin", "verify", "--device", device_spec, "--pin-env", "TEST_PIN")
    third = cli("key", "pin", "verify", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert third.exit_code == ExitCode.PIN_AUTH_BLOCKED
    assert "re-insert" in third.stderr
    retries = json.loads(cli("key", "pin", "retries", "--device", device_spec, "--json").stdout)
    assert retries == {"pin_retries": 5, "reinsert_needed": True}
    for _ in range(2):
        authenticator.power_cycle()
        for _ in range(3):
            result = cli("key", "pin", "verify", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert result.exit_code == ExitCode.PIN_BLOCKED
    pin_env(PIN)
    authenticator.power_cycle()
    assert (
        cli("key", "pin", "verify", "--device", device_spec, "--pin-env", "TEST_PIN").exit_code
        == ExitCode.PIN_BLOCKED
    )


def test_change_pin(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN, "new-pin-5678")
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    changed = cli(
        "key",
        "pin",
        "change",
        "--device",
        spec,
        "--pin-env",
        "TEST_PIN",
        "--new-pin-env",
        "TEST_NEW_PIN",
    )
    assert changed.exit_code == 0, changed.stderr
    pin_env("new-pin-5678")
    assert cli("key", "pin", "verify", "--device", spec, "--pin-env", "TEST_PIN").exit_code == 0


def test_credentials_list_update_delete(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    empty_key = cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN")
    assert empty_key.exit_code == ExitCode.PIN_NOT_SET
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    _register(spec, "example.com", "alice")
    _register(spec, "example.com", "bob")
    _register(spec, "example.org", "carol")
    listed = json.loads(
        cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN", "--json").stdout
    )
    assert sorted((c["rp_id"], c["user_name"]) for c in listed) == [
        ("example.com", "alice"),
        ("example.com", "bob"),
        ("example.org", "carol"),
    ]
    only_org = cli(
        "key",
        "creds",
        "list",
        "--rp",
        "example.org",
        "--device",
        spec,
        "--pin-env",
        "TEST_PIN",
        "--json",
    )
    assert [c["user_name"] for c in json.loads(only_org.stdout)] == ["carol"]

    bob = next(c for c in listed if c["user_name"] == "bob")
    renamed = cli(
        "key",
        "creds",
        "update-user",
        bob["credential_id"],
        "--name",
        "robert",
        "--device",
        spec,
        "--pin-env",
        "TEST_PIN",
    )
    assert renamed.exit_code == 0, renamed.stderr
    deleted = cli(
        "key",
        "creds",
        "delete",
        bob["credential_id"],
        "--yes",
        "--device",
        spec,
        "--pin-env",
        "TEST_PIN",
    )
    assert deleted.exit_code == 0, deleted.stderr
    assert "robert" in deleted.stderr
    after = json.loads(
        cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN", "--json").stdout
    )
    assert sorted(c["user_name"] for c in after) == ["alice", "carol"]
    missing = cli(
        "key",
        "creds",
        "delete",
        bob["credential_id"],
        "--yes",
        "--device",
        spec,
        "--pin-env",
        "TEST_PIN",
    )
    assert missing.exit_code == ExitCode.NOT_FOUND
    not_base64 = cli("key", "creds", "delete", "!!", "--yes", "--device", spec, "--pin-env", "TEST_PIN")
    assert not_base64.exit_code == ExitCode.INVALID_INPUT


def test_delete_without_yes_and_no_terminal_changes_nothing(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    _register(spec, "example.com", "alice")
    (cred,) = json.loads(
        cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN", "--json").stdout
    )
    refused = cli("key", "creds", "delete", cred["credential_id"], "--device", spec, "--pin-env", "TEST_PIN")
    assert refused.exit_code == ExitCode.CANCELED
    still = json.loads(
        cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN", "--json").stdout
    )
    assert len(still) == 1


def test_config_min_pin_length_and_always_uv(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    shrink = cli("key", "config", "min-pin-length", "2", "--device", spec, "--pin-env", "TEST_PIN")
    assert shrink.exit_code == ExitCode.PIN_POLICY
    grow = cli("key", "config", "min-pin-length", "8", "--device", spec, "--pin-env", "TEST_PIN")
    assert grow.exit_code == 0, grow.stderr
    info = json.loads(cli("key", "info", "--device", spec, "--json").stdout)
    assert info["min_pin_length"] == 8
    assert cli("key", "config", "always-uv", "on", "--device", spec, "--pin-env", "TEST_PIN").exit_code == 0
    assert json.loads(cli("key", "info", "--device", spec, "--json").stdout)["options"]["alwaysUv"] is True
    bad = cli("key", "config", "always-uv", "maybe", "--device", spec, "--pin-env", "TEST_PIN")
    assert bad.exit_code == ExitCode.INVALID_INPUT
    forced = cli("key", "config", "force-change", "--device", spec, "--pin-env", "TEST_PIN")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(cli("key", "info", "--device", spec, "--json").stdout)["force_pin_change"] is True


def test_a_forced_pin_change_is_said_as_such(cli: Any, spec: str, pin_env: Any) -> None:
    """While a change is forced the key refuses a token with PIN_POLICY_VIOLATION (CTAP 2.1 §6.5.5.7.2):
    the right PIN was given, no new PIN was refused (issue #23 item 1, as keyctl's client sees it)."""
    pin_env(PIN, "7305-newer")
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    assert cli("key", "config", "force-change", "--device", spec, "--pin-env", "TEST_PIN").exit_code == 0
    for command in (("pin", "verify"), ("creds", "list")):
        refused = cli("key", *command, "--device", spec, "--pin-env", "TEST_PIN")
        assert refused.exit_code == ExitCode.PIN_POLICY, refused.stderr
        assert refused.stderr.splitlines() == [
            "error: the key requires a new PIN before it accepts this one (a forced PIN change)",
            "  fix: change it: 'keyctl key pin change'",
        ]
    changed = cli(
        "key", "pin", "change", "--device", spec, "--pin-env", "TEST_PIN", "--new-pin-env", "TEST_NEW_PIN"
    )
    assert changed.exit_code == 0, changed.stderr
    pin_env("7305-newer")
    assert cli("key", "pin", "verify", "--device", spec, "--pin-env", "TEST_PIN").exit_code == 0


def test_reset_only_inside_the_power_up_window(
    cli: Any, device_spec: str, pin_env: Any, authenticator: VirtualAuthenticator, clock: FakeClock
) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", device_spec, "--pin-env", "TEST_PIN")
    clock.advance(60)
    late = cli("key", "reset", "--yes", "--device", device_spec)
    assert late.exit_code == ExitCode.RESET_REFUSED
    assert json.loads(cli("key", "info", "--device", device_spec, "--json").stdout)["pin_set"] is True
    authenticator.power_cycle()
    done = cli("key", "reset", "--yes", "--device", device_spec)
    assert done.exit_code == 0, done.stderr
    assert json.loads(cli("key", "info", "--device", device_spec, "--json").stdout)["pin_set"] is False


def test_wink(cli: Any, device_spec: str, authenticator: VirtualAuthenticator) -> None:
    assert cli("key", "wink", "--device", device_spec).exit_code == 0
    assert authenticator.winks == 1


def test_in_process_transport_gives_the_same_answers(authenticator: VirtualAuthenticator) -> None:
    from keyctl.device.key import SecurityKey
    from keyctl.hid.inprocess import connect

    key = SecurityKey(connect(authenticator))
    key.set_pin(PIN)
    assert key.pin_retries() == (8, False)
    assert key.info().aaguid == str(Ctap2(connect(authenticator)).info.aaguid)


def test_enterprise_attestation(cli: Any, device_spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", device_spec, "--pin-env", "TEST_PIN")
    assert json.loads(cli("key", "info", "--device", device_spec, "--json").stdout)["options"]["ep"] is False
    enabled = cli(
        "key", "config", "enterprise-attestation", "enable", "--device", device_spec, "--pin-env", "TEST_PIN"
    )
    assert enabled.exit_code == 0, enabled.stderr
    assert json.loads(cli("key", "info", "--device", device_spec, "--json").stdout)["options"]["ep"] is True
    wrong = cli(
        "key", "config", "enterprise-attestation", "disable", "--device", device_spec, "--pin-env", "TEST_PIN"
    )
    assert wrong.exit_code == ExitCode.INVALID_INPUT


def test_key_removed_mid_operation(authenticator: VirtualAuthenticator) -> None:
    from keyctl.device.key import SecurityKey
    from keyctl.errors import DeviceRemoved
    from keyctl.hid import open_device

    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    key = SecurityKey(open_device(f"udp:{server.address[0]}:{server.address[1]}"))
    server.stop()  # pulled out after it was opened
    with pytest.raises(DeviceRemoved) as removed:
        key.pin_retries()
    assert removed.value.exit_code == ExitCode.DEVICE_REMOVED


def test_unknown_device_spec(cli: Any) -> None:
    result = cli("key", "info", "--device", "bluetooth:xyz")
    assert result.exit_code == ExitCode.INVALID_INPUT


def _credentials_by_fido2(spec: str) -> dict[str, tuple[str, str]]:
    """Each resident credential's (user name, display name), read with python-fido2's own credMgmt."""
    from fido2.ctap2 import ClientPin, CredentialManagement

    from keyctl.hid import open_device

    device = open_device(spec)
    try:
        ctap = Ctap2(device)
        pin = ClientPin(ctap)
        token = pin.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        credman = CredentialManagement(ctap, pin.protocol, token)
        found = {}
        for rp in credman.enumerate_rps():
            for cred in credman.enumerate_creds(rp[CredentialManagement.RESULT.RP_ID_HASH]):
                user = cred[CredentialManagement.RESULT.USER]
                found[user["id"].decode()] = (user.get("name", ""), user.get("displayName", ""))
        return found
    finally:
        device.close()


def test_update_user_sets_the_display_name_and_keeps_the_name(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    _register(spec, "example.com", "bob")
    _register(spec, "example.com", "alice")
    (bob,) = [
        c
        for c in json.loads(
            cli("key", "creds", "list", "--device", spec, "--pin-env", "TEST_PIN", "--json").stdout
        )
        if c["user_name"] == "bob"
    ]
    updated = cli(
        "key", "creds", "update-user", bob["credential_id"], "--display-name", "Robert Smith",
        "--device", spec, "--pin-env", "TEST_PIN",
    )  # fmt: skip
    assert updated.exit_code == 0, updated.stderr
    assert _credentials_by_fido2(spec) == {"bob": ("bob", "Robert Smith"), "alice": ("alice", "Alice")}


def _min_pin_length_reported(spec: str, rp_id: str) -> int | None:
    """The minPinLength extension output a registration for ``rp_id`` gets (None when not given)."""
    from fido2.ctap2.extensions import MinPinLengthExtension

    from keyctl.hid import open_device

    client = Fido2Client(
        open_device(spec),
        DefaultClientDataCollector(f"https://{rp_id}"),
        user_interaction=_Pin(),
        extensions=[MinPinLengthExtension()],
    )
    result = client.make_credential(
        PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(id=rp_id, name=rp_id),
            user=PublicKeyCredentialUserEntity(id=b"u", name="u", display_name="U"),
            challenge=os.urandom(32),
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)
            ],
            extensions={"minPinLength": True},
        )
    )
    extensions = result.response.attestation_object.auth_data.extensions or {}
    length = extensions.get("minPinLength")
    return None if length is None else int(length)


def test_min_pin_length_rp_ids_are_told_the_length(cli: Any, spec: str, pin_env: Any) -> None:
    pin_env(PIN)
    cli("key", "pin", "set", "--device", spec, "--pin-env", "TEST_PIN")
    assert _min_pin_length_reported(spec, "corp.example.com") is None  # no RP may read it yet
    configured = cli(
        "key", "config", "min-pin-length", "8", "--rp", "corp.example.com", "--rp", "sso.example.com",
        "--device", spec, "--pin-env", "TEST_PIN",
    )  # fmt: skip
    assert configured.exit_code == 0, configured.stderr
    assert _min_pin_length_reported(spec, "corp.example.com") == 8
    assert _min_pin_length_reported(spec, "sso.example.com") == 8
    assert _min_pin_length_reported(spec, "other.example.com") is None


def test_keyctl_device_is_the_default_device(
    cli: Any, device_spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    aaguid = json.loads(cli("key", "info", "--json", "--device", device_spec).stdout)["aaguid"]
    monkeypatch.setenv("KEYCTL_DEVICE", device_spec)
    from_env = cli("key", "info", "--json")
    assert from_env.exit_code == 0, from_env.stderr
    assert json.loads(from_env.stdout)["aaguid"] == aaguid
    store.create("other", new_state())
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", store.new_ci_key())
    explicit = cli("key", "info", "--json", "--device", "virtual:other")  # --device wins over the variable
    assert explicit.exit_code == 0, explicit.stderr
    assert json.loads(explicit.stdout)["aaguid"] != aaguid
