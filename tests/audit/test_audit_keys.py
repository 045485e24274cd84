"""keyctl audit keys against virtual authenticators (over UDP, as a simulator), with a test MDS blob that
lists the authenticator's own attestation CA as the root for its AAGUID."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyctl.audit import mds
from keyctl.authenticator import AttestationMode, VirtualAuthenticator, new_state
from keyctl.authenticator.attestation import ca_certificate_pem
from keyctl.authenticator.state import AuthenticatorState
from keyctl.errors import ExitCode
from keyctl.hid.udp import UdpServer

from .mds_factory import Pki, entry, sign_blob

FIRMWARE = 0x00010000


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


def _codes(result: Any) -> set[str]:
    return {f["code"] for f in json.loads(result.stdout)["findings"]}


def test_a_genuine_key_with_a_pin(
    cli: Any, serve: Any, publish: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = new_state(attestation_mode=AttestationMode.X5C)
    publish(state, [_der_b64(ca_certificate_pem(state))])
    spec = serve(state, pin="4821-good")
    monkeypatch.setenv("KEY_PIN", "4821-good")
    result = cli("audit", "keys", "--device", spec, "--pin-env", "KEY_PIN", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert _codes(result) == {"key.short_min_pin"}  # min length 4 is below the default policy's 6


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
