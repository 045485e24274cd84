"""`keyctl totp`: TOTP/HOTP secrets in the OS keyring, or an encrypted file in CI mode (add, import, code,
list, rename, delete, show, ci-key)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from keyctl.cli.fast import print_code
from keyctl.cli.output import JsonOption, RevealOption, Terminal, YesOption, secret_out
from keyctl.errors import AlreadyExists, InvalidInput

if TYPE_CHECKING:
    from keyctl.totp.model import Credential, Entry

app = typer.Typer(no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Name of the entry (any printable text).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing entry or file.")]


def _read_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}", "check the file name") from None


def _from_qr(image: Path, name: str) -> Credential:
    from keyctl.totp.model import parse_uri
    from keyctl.totp.qr import decode_image

    texts = decode_image(_read_file(str(image)), str(image))
    uris = [text for text in texts if text.lower().startswith("otpauth://")]
    if any(text.lower().startswith("otpauth-migration:") for text in texts):
        raise InvalidInput(
            f"the QR code in {image} is a Google Authenticator export",
            f"import it with: keyctl totp import {image}",
        )
    if not uris:
        raise InvalidInput(
            f"the QR code in {image} is not an otpauth URI", "use the QR code the service shows"
        )
    if len(uris) > 1:
        raise InvalidInput(f"{image} holds {len(uris)} otpauth QR codes", "crop the image to one QR code")
    return parse_uri(uris[0], name=name)


def _from_secret(name: str, params: dict[str, Any]) -> Credential:
    from keyctl.cli.prompt import read_secret
    from keyctl.totp.model import Credential, Entry, check_name, check_parameters, decode_base32

    entry = check_parameters(Entry(name=check_name(name), **params))
    return Credential(entry, decode_base32(read_secret("base32 secret")))


@app.command()
def add(
    name: NameArg,
    uri: Annotated[
        str | None,
        typer.Option("--uri", metavar="URI|-", help="An otpauth:// URI, or - to read it from stdin."),
    ] = None,
    secret: Annotated[
        bool, typer.Option("--secret", help="Ask for a base32 secret (hidden), or read it from stdin.")
    ] = False,
    qr: Annotated[
        Path | None, typer.Option("--qr", metavar="IMAGE", help="A PNG/JPEG of the QR code.")
    ] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="With --secret: the issuer.")] = None,
    digits: Annotated[int | None, typer.Option("--digits", help="With --secret: 6 (default) to 8.")] = None,
    period: Annotated[
        int | None, typer.Option("--period", help="With --secret: seconds (default 30).")
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(
            "--algorithm",
            click_type=click.Choice(["SHA1", "SHA256", "SHA512"], case_sensitive=False),
            help="With --secret (default SHA1).",
        ),
    ] = None,
    hotp: Annotated[bool, typer.Option("--hotp", help="With --secret: counter-based (HOTP).")] = False,
    counter: Annotated[
        int | None, typer.Option("--counter", help="With --secret --hotp: start value.")
    ] = None,
    force: ForceOption = False,
    stray: Annotated[list[str] | None, typer.Argument(hidden=True, metavar="", show_default=False)] = None,
) -> None:
    """Add an entry from an otpauth URI, a base32 secret or a QR code image."""
    from keyctl.totp import vault
    from keyctl.totp.model import parse_uri

    if stray:  # most likely `--secret BASE32`: refuse without echoing it (Click would print it)
        raise InvalidInput(
            "unexpected argument after NAME (not shown: it may be a secret)",
            "--secret takes no value: type the secret at the prompt, or pipe it in on stdin",
        )
    sources = [flag for flag, given in (("--uri", uri), ("--secret", secret), ("--qr", qr)) if given]
    if len(sources) != 1:
        raise InvalidInput("give exactly one of --uri, --secret, --qr", "e.g. keyctl totp add NAME --secret")
    params = {
        "issuer": issuer,
        "digits": digits,
        "period": period,
        "algorithm": algorithm,
        "counter": counter,
    }
    given = {key: value for key, value in params.items() if value is not None}
    if not secret and (given or hotp):
        raise InvalidInput(
            f"--{next(iter(given), 'hotp')} applies to --secret only",
            "the URI or QR code sets the parameters",
        )
    if counter is not None and not hotp:
        raise InvalidInput("--counter applies to --hotp only", "add --hotp for a counter-based entry")
    terminal = Terminal()
    if secret:
        credential = _from_secret(name, {**given, "kind": "hotp" if hotp else "totp"})
    elif qr is not None:
        credential = _from_qr(qr, name)
    elif uri == "-":
        lines = [line for line in _read_file("-").decode("utf-8", "replace").splitlines() if line.strip()]
        if len(lines) != 1:
            raise InvalidInput("expected one otpauth URI on stdin", "for several, use: keyctl totp import -")
        credential = parse_uri(lines[0], name=name)
    else:
        credential = parse_uri(str(uri), name=name)
        terminal.warn("a URI on the command line shows in 'ps' and shell history; prefer --uri - or --qr")
    vault.add(credential, force=force)
    terminal.success(f"added {name} ({credential.entry.describe()})")


@app.command("import")
def import_(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="otpauth URIs, a Google/Aegis export, or a QR image.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Import otpauth URIs (one per line), Google Authenticator exports, Aegis plain JSON, or QR images."""
    from keyctl.totp import vault
    from keyctl.totp.importers import parse_import
    from keyctl.totp.model import Credential, Rejected

    parsed = parse_import(_read_file(source), "stdin" if source == "-" else source)
    if not parsed:
        raise InvalidInput(f"no accounts found in {source}", "give otpauth URIs, an export, or a QR image")
    rejected = [item for item in parsed if isinstance(item, Rejected)]
    added, skipped = vault.add_many(item for item in parsed if isinstance(item, Credential))
    terminal = Terminal(as_json)
    if as_json:
        terminal.json(
            {
                "added": added,
                "skipped": [{"name": name, "reason": "duplicate name"} for name in skipped],
                "rejected": [{"entry": item.label, "reason": item.reason} for item in rejected],
            }
        )
    else:
        for name in added:
            terminal.line(f"added     {name}")
        for name in skipped:
            terminal.line(f"skipped   {name}: an entry of that name exists")
        for item in rejected:
            terminal.line(f"rejected  {item.label}: {item.reason}")
        terminal.line(f"{len(added)} added, {len(skipped)} skipped, {len(rejected)} rejected")
    if rejected:
        raise InvalidInput(
            f"{len(rejected)} of {len(parsed)} entries were rejected",
            "the others were imported; fix the rejected ones and import them again",
        )


def _watch(name: str, terminal: Terminal) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    from keyctl.totp import vault

    credential = vault.load(name)
    if credential.entry.kind != "totp":
        raise InvalidInput(
            "--watch is for TOTP entries", "an HOTP code uses up a counter value: run code once"
        )
    period = credential.entry.period
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[left]:>3} s"),
        console=terminal.out,
    )
    task = progress.add_task(name, total=period, left=period)
    try:
        with progress:
            while True:
                code = vault.totp_code(credential, time.time())
                left = code.remaining or 0
                progress.update(task, description=f"{name}  {code.code}", completed=period - left, left=left)
                time.sleep(0.2)
    except KeyboardInterrupt:
        return


@app.command()
def code(
    name: Annotated[
        str | None, typer.Argument(help="Name of the entry (without: every TOTP entry's code).")
    ] = None,
    as_json: JsonOption = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep showing the current code until Ctrl-C.")
    ] = False,
) -> None:
    """Print the current code (HOTP: the next one; its counter is saved first); without NAME, all codes."""
    if watch:
        if as_json:
            raise InvalidInput("--watch and --json do not go together", "drop one of them")
        if name is None:
            raise InvalidInput("--watch needs the NAME of one entry", "e.g. keyctl totp code NAME --watch")
        _watch(name, Terminal())
        return
    if name is None:
        _all_codes(Terminal(as_json))
        return
    print_code(name, as_json)


def _all_codes(terminal: Terminal) -> None:
    """Every TOTP entry's current code; HOTP entries are listed without one (a code would use up a
    counter value: ask for it by name)."""
    from keyctl.totp import vault

    now = time.time()
    rows: list[dict[str, Any]] = []
    for entry in vault.entries():
        current = vault.totp_code(vault.load(entry.name), now) if entry.kind == "totp" else None
        rows.append(
            {
                "name": entry.name,
                "issuer": entry.issuer,
                "type": entry.kind,
                "code": current.code if current else None,
                "remaining": current.remaining if current else None,
            }
        )
    if terminal.json_mode:
        terminal.json(rows)
    elif not rows:
        terminal.status("no TOTP entries yet: add one with 'keyctl totp add NAME --secret'")
    else:
        terminal.table(
            ("name", "issuer", "code", "left"),
            [
                (
                    r["name"],
                    r["issuer"] or "-",
                    r["code"] or "(HOTP: by name)",
                    f"{r['remaining']} s" if r["code"] else "-",
                )
                for r in rows
            ],
        )


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "issuer": entry.issuer,
        "account": entry.account,
        "type": "steam" if entry.encoder == "steam" else entry.kind,
        "digits": entry.digits,
        "period": entry.period if entry.kind == "totp" else None,
        "counter": entry.counter if entry.kind == "hotp" else None,
        "algorithm": entry.algorithm,
    }


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the entries (never their secrets)."""
    from keyctl.totp import vault

    rows = [_row(entry) for entry in vault.entries()]
    terminal = Terminal(as_json)
    if as_json:
        terminal.json(rows)
        return
    if not rows:
        terminal.status("no TOTP entries yet: add one with 'keyctl totp add NAME --secret'")
        return
    columns = ("name", "issuer", "type", "digits", "period", "algorithm")
    terminal.table(columns, [[row[c] if row[c] is not None else "-" for c in columns] for row in rows])


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="Current name.")],
    new: Annotated[str, typer.Argument(help="New name.")],
) -> None:
    """Rename an entry (its keyring entry moves with it)."""
    from keyctl.totp import vault

    vault.rename(old, new)
    Terminal().success(f"renamed {old} to {new}")


@app.command("delete")
@app.command("remove", hidden=True)  # the old verb, kept for scripts
def delete(name: NameArg, yes: YesOption = False) -> None:
    """Delete an entry and its secret."""
    from keyctl.totp import vault

    vault.get(name)
    terminal = Terminal()
    terminal.confirm(f"Remove TOTP entry {name!r} and delete its secret?", yes)
    vault.remove(name)
    terminal.success(f"removed {name}")


@app.command()
def show(
    name: NameArg,
    uri: Annotated[
        bool, typer.Option("--uri", help="Print the otpauth URI (it contains the secret).")
    ] = False,
    qr: Annotated[bool, typer.Option("--qr", help="Draw the QR code in the terminal.")] = False,
    invert: Annotated[bool, typer.Option("--invert", help="With --qr: for light terminal themes.")] = False,
    png: Annotated[
        Path | None, typer.Option("--png", metavar="FILE", help="Write the QR code as a PNG.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Show an entry's secret as an otpauth URI or QR code, to move it to a phone or another machine."""
    from keyctl.fileio import atomic_write
    from keyctl.totp import qr as qrcodes
    from keyctl.totp import vault
    from keyctl.totp.model import build_uri

    if [uri, qr, png is not None].count(True) != 1:
        raise InvalidInput("give exactly one of --uri, --qr, --png FILE", "e.g. keyctl totp show NAME --qr")
    if invert and not qr:
        raise InvalidInput("--invert applies to --qr only", "e.g. keyctl totp show NAME --qr --invert")
    if png is not None and png.exists() and not force:
        raise AlreadyExists(f"{png} already exists", "choose another file, or pass --force to overwrite it")
    terminal = Terminal()
    text = build_uri(vault.load(name))
    if uri:
        terminal.line(text)
    elif png is not None:
        atomic_write(png, qrcodes.png(text), mode=0o600)
        terminal.success(f"wrote {png} (mode 0600: it contains the secret)")
    else:
        lines = qrcodes.halfblocks(qrcodes.matrix(text), invert=invert)
        width = shutil.get_terminal_size().columns
        if len(lines[0]) > width:
            raise InvalidInput(
                f"the terminal is {width} columns wide; this QR code needs {len(lines[0])}",
                "widen the window (or make the font smaller), or use --png FILE",
            )
        for line in lines:
            terminal.line(line)


@app.command("ci-key")
def ci_key(reveal: RevealOption = False) -> None:
    """Print a fresh value for $KEYCTL_TOTP_KEY (CI mode: secrets in an encrypted file, no OS keyring)."""
    from keyctl.totp import filevault

    secret_out(filevault.new_key(), reveal, "a key")
