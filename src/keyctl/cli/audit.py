"""`keyctl audit`: findings about registered passkeys and connected keys, for people and for CI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyctl.cli.output import JsonOption, Terminal
from keyctl.cli.prompt import read_secret

if TYPE_CHECKING:
    from keyctl.audit.findings import Finding
    from keyctl.audit.keys import KeyFacts

app = typer.Typer(no_args_is_help=True)

FailOnOption = Annotated[
    str, typer.Option("--fail-on", help="Exit 9 when a finding is at least this severe (info..critical).")
]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print the findings as CSV on stdout.")]
HtmlOption = Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")]


def _emit(
    findings: list[Finding],
    title: str,
    summary: dict[str, object],
    as_json: bool,
    as_csv: bool,
    html: Path | None,
    fail_on: str,
) -> None:
    from keyctl.audit import report
    from keyctl.audit.findings import Severity
    from keyctl.errors import AuditFindings, InvalidInput
    from keyctl.fileio import atomic_write

    threshold = Severity.parse(fail_on)
    if as_json and as_csv:
        raise InvalidInput("--json and --csv exclude each other", "choose one output format")
    ordered = report.sort_findings(findings)
    if html is not None:
        page = report.to_html(ordered, title, summary, datetime.now(UTC))
        atomic_write(html, page.encode(), mode=0o644)
    term = Terminal(as_json)
    if as_json:
        term.line(report.to_json(ordered, summary))
    elif as_csv:
        term.line(report.to_csv(ordered).rstrip("\n"))
    elif ordered:
        term.table(
            ["severity", "finding", "subject", "what", "fix"],
            [(f.severity.name.lower(), f.code, f.subject, f.message, f.fix) for f in ordered],
            title=title,
        )
    else:
        term.status("No findings.")
    failing = [f for f in ordered if f.severity >= threshold]
    if failing:
        raise AuditFindings(
            f"{len(failing)} finding(s) at or above {threshold.name.lower()}",
            "fix them, or raise the threshold with --fail-on",
        )


@app.command()
def server(
    server_url: Annotated[str, typer.Option("--server", help="The relying party's base URL.")],
    admin_token_env: Annotated[
        str | None, typer.Option("--admin-token-env", metavar="VAR", help="Env var holding the admin token.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy TOML: allowed models, levels...")
    ] = None,
    stale_days: Annotated[
        int | None, typer.Option("--stale-days", help="Passkeys unused this long are stale.")
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
    from keyctl.audit import mds
    from keyctl.audit.findings import audit_users, load_policy
    from keyctl.audit.server import AdminClient
    from keyctl.webauthn.profile import load

    rules = load_policy(policy, stale_days)
    admin_paths = load(profile).admin
    token = read_secret("admin token", admin_token_env)
    metadata = mds.current()
    now = datetime.now(UTC)
    with AdminClient(server_url, token, admin_paths) as client:
        anomalies = client.counter_anomalies()
        users = 0
        passkeys = 0
        findings: list[Finding] = []
        for user in client.users(anomalies):
            users += 1
            passkeys += len(user.passkeys)
            findings.extend(audit_users([user], metadata, rules, now))
    summary: dict[str, object] = {
        "server": server_url,
        "users": users,
        "passkeys": passkeys,
        "metadata": metadata.source if metadata else "none (run 'keyctl mds update')",
        "stale_days": rules.stale_days,
    }
    _emit(findings, f"Passkey audit of {server_url}", summary, as_json, as_csv, html, fail_on)


@app.command()
def keys(
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device", "-d", help="A key to audit (repeatable); default: every USB key plugged in."
        ),
    ] = None,
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

    Each key is asked for one throwaway non-resident credential (touch it when it blinks); nothing is
    stored on the key."""
    from keyctl.audit import mds
    from keyctl.audit.findings import load_policy
    from keyctl.audit.keys import audit_key
    from keyctl.errors import NoDevice

    rules = load_policy(policy)
    pin = read_secret("PIN", pin_env) if pin_env else None
    specs = device or _usb_key_paths()
    if not specs:
        raise NoDevice(
            "No compatible device found: no security key is plugged in", "insert a key, or give --device"
        )
    term = Terminal(as_json)
    metadata = mds.current()
    findings: list[Finding] = []
    for spec in specs:
        findings.extend(audit_key(_inspect(spec, pin, term), metadata, rules))
    summary: dict[str, object] = {
        "keys": len(specs),
        "metadata": metadata.source if metadata else "none (run 'keyctl mds update')",
    }
    _emit(findings, "Security key audit", summary, as_json, as_csv, html, fail_on)


def _inspect(spec: str, pin: str | None, term: Terminal) -> KeyFacts:
    from collections import Counter
    from functools import partial

    from keyctl.audit.keys import AUDIT_RP_ID, KeyFacts
    from keyctl.device.key import SecurityKey
    from keyctl.errors import KeyctlError
    from keyctl.hid import open_device

    key = SecurityKey(open_device(spec))
    info = key.info()
    try:
        attested = key.attestation_sample(AUDIT_RP_ID, pin, partial(term.status, f"Touch the key {spec}..."))
        problem = None
    except KeyctlError as error:
        attested, problem = None, error.message
    per_rp = dict(Counter(c.rp_id for c in key.credentials(pin))) if pin and info.pin_set else None
    return KeyFacts(spec, info, attested, problem, per_rp)


def _usb_key_paths() -> list[str]:
    from fido2.hid import list_descriptors

    return [f"usb:{descriptor.path}" for descriptor in list_descriptors()]
