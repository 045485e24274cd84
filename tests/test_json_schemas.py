"""The --json outputs of keyctl key, doctor and audit match the schemas documented in schemas/."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.webauthn import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
)

from keyctl.authenticator import UvMode, VirtualAuthenticator, new_state
from keyctl.hid import open_device
from keyctl.hid.udp import UdpServer

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
PIN = "4821-good"


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    names = sorted(p.name for p in SCHEMAS.glob("*.json"))
    assert len(names) >= 6
    for name in names:
        jsonschema.Draft202012Validator.check_schema(_schema(name))


class _Pin(UserInteraction):
    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return PIN


@pytest.fixture
def key_with_data(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A UDP virtual key with a PIN, a discoverable credential and a fingerprint."""
    key = VirtualAuthenticator(new_state(uv=UvMode.FINGERPRINT), pin_code=PIN)  # a sensor, to enroll
    server = UdpServer(key, "127.0.0.1", 0).start()
    host, port = server.address
    spec = f"udp:{host}:{port}"
    monkeypatch.setenv("KEY_PIN", PIN)
    client = Fido2Client(
        open_device(spec), DefaultClientDataCollector("https://example.com"), user_interaction=_Pin()
    )
    client.make_credential(
        PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(id="example.com", name="Example"),
            user=PublicKeyCredentialUserEntity(id=b"alice", name="alice", display_name="Alice"),
            challenge=os.urandom(32),
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED
            ),
        )
    )
    yield spec
    server.stop()


def _validated(result: Any, schema: str) -> Any:
    data = json.loads(result.stdout)
    jsonschema.validate(data, _schema(schema))
    return data


def test_key_outputs_match_their_schemas(cli: Any, key_with_data: str) -> None:
    spec = key_with_data
    auth = ("--device", spec, "--pin-env", "KEY_PIN")
    assert cli("key", "fingerprints", "add", "--name", "right index", *auth).exit_code == 0
    listed = _validated(cli("key", "list", "--device", spec, "--json"), "key-list.json")
    assert any(k["spec"] == spec for k in listed)
    info = _validated(cli("key", "info", "--device", spec, "--json"), "key-info.json")
    assert info["pin_set"] is True
    creds = _validated(cli("key", "creds", "list", *auth, "--json"), "key-creds-list.json")
    assert [c["user_name"] for c in creds] == ["alice"]
    fingers = _validated(cli("key", "fingerprints", "list", *auth, "--json"), "key-fingerprints-list.json")
    assert [f["name"] for f in fingers] == ["right index"]
    report = _validated(cli("audit", "keys", *auth, "--json", "--fail-on", "critical"), "audit-report.json")
    assert report["summary"]["counts"]["critical"] == 0
    _validated(cli("doctor", "--json", "--udp", spec.removeprefix("udp:")), "doctor.json")


def test_the_schemas_reject_what_keyctl_does_not_print(cli: Any, key_with_data: str) -> None:
    info = json.loads(cli("key", "info", "--device", key_with_data, "--json").stdout)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**info, "pin": "1234"}, _schema("key-info.json"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**info, "aaguid": "not-an-aaguid"}, _schema("key-info.json"))
