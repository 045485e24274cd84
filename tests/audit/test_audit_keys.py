"""keyctl audit keys against virtual authenticators (over UDP, as a simulator), with a test MDS blob that
lists the authenticator's own attestation CA as the root for its AAGUID."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
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

from keyctl.audit import mds
from keyctl.audit.findings import Policy
from keyctl.audit.keys import AUDIT_RP_ID, KeyFacts, audit_key
from keyctl.authenticator import AttestationMode, VirtualAuthenticator, new_state
from keyctl.authenticator.attestation import ca_certificate_pem
from keyctl.authenticator.state import AuthenticatorState
from keyctl.device.key import KeyInfo, SecurityKey
from keyctl.errors import ExitCode
from keyctl.hid import open_device
from keyctl.hid.udp import UdpServer

from .mds_factory import Pki, entry, sign_blob

FIRMWARE = 0x00010000
PIN = "4821-good"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "audit-report.json").read_text())


def _der_b64(pem: str | bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.fixture
def serve() -> Iterator[Callable[[AuthenticatorState], str]]:
    servers: list[UdpServer] = []

    def start(state: AuthenticatorState, pin: str | None = None) -> str:
        server = UdpServer(VirtualAuthenticator(state, pin_code=pin), "127.0.0.1", 0).start()
        servers.append(server)
        host, port = server.address
        return f"udp:{host}:{port}"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Sign and install an MDS blob with one entry for a virtual authenticator."""
    pki = Pki()
    root = tmp_path / "mds-root.pem"
    root.write_bytes(pki.root_pem())
    monkeypatch.setenv(mds.ENV_MDS_ROOT, str(root))

    def install(
        state: AuthenticatorState, roots: list[str], reports: list[dict[str, Any]] | None = None
    ) -> None:
        statement = entry(
            str(uuid.UUID(bytes=state.aaguid)),
            "Virtual Test Key",
            reports or [{"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2025-01-01"}],
            version=FIRMWARE,
        )
        statement["metadataStatement"]["attestationRootCertificates"] = roots
        blob = tmp_path / "blob.jwt"
        blob.write_bytes(
            sign_blob(pki, entries=[statement], serial=len(roots) + int(uuid.uuid4().int % 1000) + 1)
        )
        mds.update(str(blob))

    return install


def _report(result: Any) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    return report


def _codes(result: Any) -> set[str]:
    return {f["code"] for f in _report(result)["findings"]}


class _Pin(UserInteraction):
    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return PIN


def _store_passkey(spec: str, rp_id: str, user: bytes) -> None:
    """A discoverable credential made the way a browser would, through fido2's client."""
    client = Fido2Client(
        open_device(spec), DefaultClientDataCollector(f"https://{rp_id}"), user_interaction=_Pin()
    )
    client.make_credential(
        PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(id=rp_id, name=rp_id),
            user=PublicKeyCredentialUserEntity(id=user, name=user.decode(), display_name=user.decode()),
            challenge=uuid.uuid4().bytes,
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)
            ],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED
            ),
        )
    )


def test_a_genuine_key_with_a_pin(
    cli: Any, serve: Any, publish: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = new_state(attestation_mode=AttestationMode.X5C)
    publish(state, [_der_b64(ca_certificate_pem(state))])
    spec = serve(state, pin=PIN)
    monkeypatch.setenv("KEY_PIN", PIN)
    result = cli("audit", "keys", "--device", spec, "--pin-env", "KEY_PIN", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert _codes(result) == {"key.short_min_pin"}  # min length 4 is below the default policy's 6
    (key,) = _report(result)["keys"]
    assert key == {
        "device": spec,
        "aaguid": str(uuid.UUID(bytes=state.aaguid)),
        "model": "Virtual Test Key",
        "certification": "FIDO_CERTIFIED_L1",
        "firmware": FIRMWARE,
        "fixed_firmware": None,
        "pin_set": True,
        "min_pin_length": 4,
        "always_uv": False,
        "attestation": "genuine",
        "remaining_slots": 100,
        "credentials_per_rp": {},
    }
    table = cli("audit", "keys", "--device", spec, "--pin-env", "KEY_PIN")
    assert "Virtual Test Key" in table.stdout
    assert "LOW (1)" in table.stdout  # the findings table is grouped by severity


def test_passkeys_per_rp_and_the_audit_credential_removed(
    cli: Any, serve: Any, publish: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that kept an audit credential (one that ignores rk=false, or an interrupted audit) has it
    deleted again through credMgmt; the others are counted per RP and left alone."""
    state = new_state(attestation_mode=AttestationMode.X5C)
    publish(state, [_der_b64(ca_certificate_pem(state))])
    spec = serve(state, pin=PIN)
    _store_passkey(spec, "example.com", b"alice")
    _store_passkey(spec, "example.com", b"bob")
    _store_passkey(spec, "login.example.org", b"alice")
    _store_passkey(spec, AUDIT_RP_ID, b"keyctl-audit")
    policy = tmp_path / "policy.toml"
    policy.write_text("min_pin_length = 4\nrequire_always_uv = true\n")
    monkeypatch.setenv("KEY_PIN", PIN)
    result = cli("audit", "keys", "--device", spec, "--pin-env", "KEY_PIN", "--policy", str(policy), "--json")
    assert result.exit_code == 0, result.stderr
    report = _report(result)
    assert report["keys"][0]["credentials_per_rp"] == {"example.com": 2, "login.example.org": 1}
    found = {f["code"]: f for f in report["findings"]}
    assert set(found) == {"key.resident_credentials", "key.always_uv_off"}
    assert (
        found["key.resident_credentials"]["message"]
        == "holds passkeys for example.com (2), login.example.org (1)"
    )
    after = _report(
        cli("audit", "keys", "--device", spec, "--pin-env", "KEY_PIN", "--policy", str(policy), "--json")
    )
    assert after["keys"][0]["remaining_slots"] == 100 - 3  # the audit credential's slot is free again
    remaining = SecurityKey(open_device(spec)).credentials(PIN)
    assert sorted((c.rp_id, c.user_name) for c in remaining) == [
        ("example.com", "alice"),
        ("example.com", "bob"),
        ("login.example.org", "alice"),
    ]
    # Without the PIN nothing can be listed or deleted, and the report says why.
    blind = _report(cli("audit", "keys", "--device", spec, "--json", "--fail-on", "critical"))
    assert blind["keys"][0]["credentials_per_rp"] is None
    assert "key.resident_credentials" not in {f["code"] for f in blind["findings"]}


def test_a_key_whose_attestation_does_not_chain_to_its_model(cli: Any, serve: Any, publish: Any) -> None:
    genuine = new_state(attestation_mode=AttestationMode.X5C)
    publish(genuine, [_der_b64(ca_certificate_pem(genuine))])
    # A counterfeit: its own CA issues certificates claiming the genuine model's AAGUID.
    counterfeit = new_state(aaguid=genuine.aaguid, attestation_mode=AttestationMode.X5C)
    result = cli("audit", "keys", "--device", serve(counterfeit), "--json")
    assert result.exit_code == ExitCode.AUDIT_FINDINGS
    assert {"key.attestation_untrusted", "key.no_pin"} <= _codes(result), result.stdout
    # A key whose authenticator data claims another AAGUID than its certificate: the statement is invalid.
    relabelled = new_state(attestation_mode=AttestationMode.X5C)
    relabelled.aaguid = genuine.aaguid
    invalid = cli("audit", "keys", "--device", serve(relabelled), "--json")
    assert invalid.exit_code == ExitCode.AUDIT_FINDINGS
    assert "key.attestation_invalid" in _codes(invalid)


def test_self_attestation_and_unknown_model(cli: Any, serve: Any, publish: Any) -> None:
    listed = new_state(attestation_mode=AttestationMode.X5C)
    publish(listed, [_der_b64(ca_certificate_pem(listed))])
    result = cli(
        "audit", "keys", "--device", serve(new_state(attestation_mode=AttestationMode.SELF)), "--json"
    )
    assert result.exit_code == 0  # medium findings stay below the default high threshold
    assert {"key.attestation_self", "key.model_unknown", "key.no_pin"} <= _codes(result)
    strict = cli(
        "audit",
        "keys",
        "--device",
        serve(new_state(attestation_mode=AttestationMode.SELF)),
        "--fail-on",
        "medium",
    )
    assert strict.exit_code == ExitCode.AUDIT_FINDINGS


def test_recalled_model_and_outdated_firmware(cli: Any, serve: Any, publish: Any) -> None:
    state = new_state(attestation_mode=AttestationMode.X5C)
    publish(
        state,
        [_der_b64(ca_certificate_pem(state))],
        reports=[
            {"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2025-01-01"},
            {
                "status": "UPDATE_AVAILABLE",
                "effectiveDate": "2025-06-01",
                "authenticatorVersion": FIRMWARE + 1,
            },
            {"status": "USER_VERIFICATION_BYPASS", "effectiveDate": "2025-07-01"},
        ],
    )
    result = cli("audit", "keys", "--device", serve(state), "--json")
    assert result.exit_code == ExitCode.AUDIT_FINDINGS
    findings = {f["code"]: f["severity"] for f in json.loads(result.stdout)["findings"]}
    assert findings["key.firmware_outdated"] == "high"
    assert findings["model.user_verification_bypass"] == "high"


def test_no_key_plugged_in(cli: Any) -> None:
    result = cli("audit", "keys")
    assert result.exit_code == ExitCode.NO_DEVICE
    # Output options are checked before any key is touched.
    refused = cli("audit", "keys", "--device", "udp:127.0.0.1:9", "--fail-on", "severe")
    assert refused.exit_code == ExitCode.INVALID_INPUT
    assert (
        "error: --fail-on: 'severe' is not one of 'info', 'low', 'medium', 'high', 'critical'"
        in refused.stderr
    )


def _info(**changes: Any) -> KeyInfo:
    fields: dict[str, Any] = {
        "aaguid": "cb69481e-8ff7-4039-93ec-0a2729a154a8",
        "versions": ("FIDO_2_1",),
        "extensions": (),
        "options": {"clientPin": True, "alwaysUv": False},
        "algorithms": ("ES256",),
        "pin_set": True,
        "pin_retries": 8,
        "uv_retries": None,
        "min_pin_length": 8,
        "force_pin_change": False,
        "remaining_discoverable_credentials": 25,
        "firmware_version": 5,
        "max_msg_size": 1200,
        "transports": ("usb",),
        "pin_uv_protocols": (2,),
    }
    fields.update(changes)
    return KeyInfo(**fields)


def test_slots_min_pin_and_always_uv_rules() -> None:
    """The key rules on getInfo records (a virtual key would need 98 passkeys to run low on slots)."""

    def codes(info: KeyInfo, policy: Policy) -> set[str]:
        facts = KeyFacts("usb:test", info, None, "no touch", {})
        return {f.code for f in audit_key(facts, None, policy)} - {
            "key.model_unknown",
            "key.attestation_unchecked",
        }

    assert codes(_info(), Policy()) == set()
    assert codes(_info(remaining_discoverable_credentials=2), Policy()) == {"key.slots_low"}
    assert codes(_info(min_pin_length=6), Policy(min_pin_length=8)) == {"key.short_min_pin"}
    assert codes(_info(), Policy(require_always_uv=True)) == {"key.always_uv_off"}
    assert codes(_info(options={"alwaysUv": True}), Policy(require_always_uv=True)) == set()
    assert codes(_info(pin_set=False), Policy()) == {"key.no_pin"}


def test_plugged_in_keys_are_audited_with_the_given_ones(
    cli: Any, serve: Any, publish: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A USB key that is listed but cannot be opened is a finding, and the other keys are still audited."""
    import fido2.hid
    from fido2.hid.base import HidDescriptor

    gone = HidDescriptor("/dev/hidraw-keyctl-test", 0x1050, 0x0407, 64, 64, "YubiKey", "123456")
    monkeypatch.setattr(fido2.hid, "list_descriptors", lambda: [gone])
    state = new_state(attestation_mode=AttestationMode.X5C)
    publish(state, [_der_b64(ca_certificate_pem(state))])
    spec = serve(state)
    plugged_in = _report(cli("audit", "keys", "--json"))  # without -d: every USB key plugged in
    assert [f["subject"] for f in plugged_in["findings"]] == ["usb:/dev/hidraw-keyctl-test"]
    result = cli("audit", "keys", "--device", "usb:/dev/hidraw-keyctl-test", "--device", spec, "--json")
    assert result.exit_code == ExitCode.AUDIT_FINDINGS, result.stderr
    report = _report(result)
    assert report["summary"]["keys"] == 2
    assert [k["device"] for k in report["keys"]] == [spec]
    unreachable = [f for f in report["findings"] if f["code"] == "key.unreachable"]
    assert [(f["subject"], f["severity"]) for f in unreachable] == [("usb:/dev/hidraw-keyctl-test", "high")]
    assert unreachable[0]["message"].startswith("could not be audited: ")


def test_a_wrong_pin_stops_the_audit_after_one_attempt(
    cli: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = (serve(new_state(attestation_mode=AttestationMode.X5C), pin=PIN) for _ in range(2))
    before = [SecurityKey(open_device(spec)).pin_retries()[0] for spec in (first, second)]
    monkeypatch.setenv("KEY_PIN", "9999-wrong")
    result = cli("audit", "keys", "--device", first, "--device", second, "--pin-env", "KEY_PIN")
    assert result.exit_code == ExitCode.NOT_VERIFIED, result.stderr
    assert "wrong PIN" in result.stderr
    after = [SecurityKey(open_device(spec)).pin_retries()[0] for spec in (first, second)]
    assert after == [before[0] - 1, before[1]]  # one attempt on the first key, none on the second
