"""`keyctl audit`: findings about registered passkeys and connected keys, for people and for CI."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

from keyctl.cli.output import DevicesOption, JsonOption, Terminal
from keyctl.cli.prompt import read_secret

if TYPE_CHECKING:
    from keyctl.audit.findings import Finding, Severity
    from keyctl.audit.report import Inventory

app = typer.Typer(no_args_is_help=True)
TERMINAL_ROWS = 100  # findings per severity in the table; a terminal cannot show 20,000 rows usefully

FailOnOption = Annotated[
    str,
    typer.Option(
        "--fail-on",
        click_type=click.Choice(["info", "low", "medium", "high", "critical"], case_sensitive=False),
        help="Exit 9 when a finding is at least this severe.",
    ),
]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print the findings as CSV on stdout.")]
HtmlOption = Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")]


def _threshold(fail_on: str, as_json: bool, as_csv: bool) -> Severity:
    """Check the output options before auditing anything (an audit of keys touches them)."""
    from keyctl.audit.findings import Severity
    from keyctl.errors import InvalidInput

    if as_json and as_csv:
        raise InvalidInput("--json and --csv exclude each other", "choose one output format")
    return Severity.parse(fail_on)


def _emit(
    findings: list[Finding],
    title: str,
    summary: dict[str, object],
    inventory: Inventory,
    on_terminal: str,
    options: tuple[bool, bool, Path | None, Severity],
) -> None:
    """Print the report (``on_terminal`` names the inventory list the table output shows) and raise
    AuditFindings when a finding reaches the --fail-on threshold."""
    from keyctl.audit import report
    from keyctl.errors import AuditFindings
    from keyctl.fileio import atomic_write

    as_json, as_csv, html, threshold = options
    ordered = report.sort_findings(findings)
    if html is not None:
        page = report.to_html(ordered, title, summary, datetime.now(UTC), inventory)
        atomic_write(html, page.encode(), mode=0o644)
    term = Terminal(as_json)
    if as_json:
        from itertools import islice

        lines = report.json_lines(ordered, summary, inventory)
        while chunk := list(islice(lines, 1000)):  # few large writes: a pipe takes them much faster
            sys.stdout.write("\n".join(chunk) + "\n")
        sys.stdout.flush()
    elif as_csv:
        term.line(report.to_csv(ordered).rstrip("\n"))
    else:
        listed = inventory[on_terminal]
        if listed and len(listed[0]) > 6:  # too wide for a row each: one column per item instead
            fields = list(listed[0])
            term.table(
                ["", *(report.cell(row[fields[0]]) for row in listed)],
                [[field, *(report.cell(row[field]) for row in listed)] for field in fields[1:]],
                title=on_terminal,
            )
        elif listed:
            term.table(
                list(listed[0]), [[report.cell(v) for v in row.values()] for row in listed], title=on_terminal
            )
        groups = report.grouped(ordered)
        for severity, group in groups:
            shown = "" if len(group) <= TERMINAL_ROWS else f", the first {TERMINAL_ROWS} shown"
            term.table(
                ["finding", "subject", "what", "fix"],
                [(f.code, f.subject, f.message, f.fix) for f in group[:TERMINAL_ROWS]],
                title=f"{severity.name} ({len(group)}{shown})",
            )
        if any(len(group) > TERMINAL_ROWS for _, group in groups):
            term.status("Some findings are not shown: --csv, --json or --html FILE list them all.")
        if not ordered:
            term.status("No findings.")
    failing = [f for f in ordered if f.severity >= threshold]
    if failing:
        raise AuditFindings(
            f"{len(failing)} finding(s) at or above {threshold.name.lower()}",
            "fix them, or raise the threshold with --fail-on",
        )


@app.command()
def server(
    server_url: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="URL",
            help="The server's URL (else $KEYCTL_ADMIN_SERVER, else the one 'keyctl admin login' stored).",
        ),
    ] = None,
    admin_token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            "--admin-token-env",
            metavar="VAR",
            help="The admin token's environment variable (else $KEYCTL_ADMIN_TOKEN, the keyring, stdin).",
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy TOML: allowed models, levels...")
    ] = None,
    stale_days: Annotated[
        int | None,
        typer.Option(
            "--stale-days",
            min=1,
            help="Passkeys unused this long are stale.",
            show_default="90, or the policy file's stale_days",
        ),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", help="Server profile (NAME or FILE) naming its admin endpoints.")
    ] = "keyctl",
    fail_on: FailOnOption = "high",
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    html: HtmlOption = None,
) -> None:
    """Audit every user's passkeys on a server through its admin API."""
    from collections import Counter

    from keyctl.audit import mds
    from keyctl.audit.findings import audit_users, load_policy
    from keyctl.audit.server import admin_api, counter_anomalies, model_rows, passkey_rows, user_records
    from keyctl.webauthn.profile import load

    threshold = _threshold(fail_on, as_json, as_csv)
    rules = load_policy(policy, stale_days)
    admin_paths = load(profile).admin
    from keyctl.admin import resolve

    server_url, token = resolve(server_url, admin_token_env, ask=lambda: read_secret("admin token"))
    metadata = mds.current()
    now = datetime.now(UTC)
    users = 0
    per_model: Counter[str] = Counter()
    passkeys: list[dict[str, object]] = []
    findings: list[Finding] = []
    with admin_api(server_url, token, admin_paths) as api:
        for user in user_records(api, counter_anomalies(api)):
            users += 1
            per_model.update(p.aaguid for p in user.passkeys)
            passkeys.extend(passkey_rows(user, metadata))
            findings.extend(audit_users([user], metadata, rules, now))
    summary: dict[str, object] = {
        "server": server_url,
        "users": users,
        "passkeys": len(passkeys),
        "metadata": metadata.source if metadata else "none (run 'keyctl mds update')",
        "stale_days": rules.stale_days,
    }
    inventory = {"models": model_rows(per_model, metadata), "passkeys": passkeys}
    title = f"Passkey audit of {server_url}"
    _emit(findings, title, summary, inventory, "models", (as_json, as_csv, html, threshold))


@app.command()
def keys(
    device: DevicesOption = None,
    pin_env: Annotated[
        str | None, typer.Option("--pin-env", metavar="VAR", help="The keys' PIN: also lists their passkeys.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy TOML: min PIN length, models...")
    ] = None,
    fail_on: FailOnOption = "high",
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    html: HtmlOption = None,
) -> None:
    """Audit connected keys: model and recalls (FIDO metadata), firmware, PIN settings, genuine attestation.

    Each key is asked for one throwaway non-resident credential (touch it when it blinks); with the PIN,
    one the key kept anyway is deleted again through credential management."""
    from functools import partial

    from keyctl.audit import mds
    from keyctl.audit.findings import load_policy
    from keyctl.audit.keys import audit_key, inspect_key, key_row, unreachable
    from keyctl.device.key import SecurityKey
    from keyctl.errors import DeviceRemoved, NoDevice
    from keyctl.hid import open_device

    threshold = _threshold(fail_on, as_json, as_csv)
    rules = load_policy(policy)
    pin = read_secret("PIN", pin_env) if pin_env else None
    specs = list(dict.fromkeys(device)) if device else _usb_key_paths()
    if not specs:
        raise NoDevice(
            "No compatible device found: no security key is plugged in", "insert a key, or give --device"
        )
    term = Terminal(as_json)
    metadata = mds.current()
    findings: list[Finding] = []
    keys_seen: list[dict[str, object]] = []
    for spec in specs:
        touch = partial(term.status, f"Touch the key {spec}...")
        try:
            facts = inspect_key(SecurityKey(open_device(spec)), spec, pin, touch)
        except (NoDevice, DeviceRemoved) as error:  # the others are still audited; a PIN error stops all
            findings.append(unreachable(spec, error))
            continue
        keys_seen.append(key_row(facts, metadata))
        findings.extend(audit_key(facts, metadata, rules))
    summary: dict[str, object] = {
        "keys": len(specs),
        "metadata": metadata.source if metadata else "none (run 'keyctl mds update')",
    }
    _emit(
        findings,
        "Security key audit",
        summary,
        {"keys": keys_seen},
        "keys",
        (as_json, as_csv, html, threshold),
    )


def _usb_key_paths() -> list[str]:
    from fido2.hid import list_descriptors

    return [f"usb:{descriptor.path}" for descriptor in list_descriptors()]
