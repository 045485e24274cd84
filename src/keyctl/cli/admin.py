"""`keyctl admin`: the admin API of a running keyctl server (users, invites, passkeys, blocks, audit log).

A top-level group, not `keyctl server admin`: `keyctl server` runs a server on this machine's database,
while these commands talk HTTP to any deployed server, like `gh api` or `kubectl`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from keyctl.cli.output import JsonOption, Terminal, YesOption, check_device
from keyctl.errors import InvalidInput, StepUpRequired

if TYPE_CHECKING:
    from keyctl.admin import AdminApi

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True)
users_app = typer.Typer(no_args_is_help=True, help="Accounts: list, show, add, delete, reset-2fa.")
invites_app = typer.Typer(no_args_is_help=True, help="Invite links for new accounts: create, list, revoke.")
passkeys_app = typer.Typer(no_args_is_help=True, help="A user's passkeys: list, rename, delete.")
blocks_app = typer.Typer(no_args_is_help=True, help="Brute-force blocks: list, lift.")
app.add_typer(users_app, name="users")
app.add_typer(invites_app, name="invites")
app.add_typer(passkeys_app, name="passkeys")
app.add_typer(blocks_app, name="blocks")

ID_WIDTH = 12  # credential ids in tables; --json has them in full

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help="The server's URL (else $KEYCTL_ADMIN_SERVER, else the one 'keyctl admin login' stored).",
    ),
]
TokenEnvOption = Annotated[
    str | None,
    typer.Option(
        "--token-env",
        metavar="VAR",
        help="The admin token's environment variable (else $KEYCTL_ADMIN_TOKEN, else the keyring).",
    ),
]
EmailArg = Annotated[str, typer.Argument(metavar="EMAIL", help="The account's email address.")]
# A named admin's step-up, for the actions that remove an account's protection (reset-2fa, deleting an
# account or a passkey): the reference server asks for one at most 5 minutes old.
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="EMAIL",
        help="Step up as this admin (one of the server's --admin-email accounts) when the server asks.",
    ),
]
StepUpTotpOption = Annotated[
    str | None,
    typer.Option(
        "--totp", metavar="NAME", help="Step-up: the --as admin's code from this keyctl TOTP vault entry."
    ),
]
StepUpTotpEnvOption = Annotated[
    str | None,
    typer.Option(
        "--totp-secret-env",
        metavar="VAR",
        help="Step-up: codes from the --as admin's TOTP secret (base32 or otpauth URI) in this variable.",
    ),
]
StepUpDeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        "-d",
        metavar="SPEC",
        callback=check_device,
        help="Step-up: the --as admin's passkey on this authenticator: usb[:PATH], udp:HOST:PORT, "
        "virtual:NAME or platform.",
    ),
]
StepUpPinEnvOption = Annotated[
    str | None,
    typer.Option(
        "--pin-env",
        metavar="VAR",
        help="Step-up with --device: the key's PIN from this variable (else a prompt).",
    ),
]
StepUp = Callable[["AdminApi"], None]


def _api(server: str | None, token_env: str | None) -> AdminApi:
    from keyctl.admin import AdminApi, resolve

    return AdminApi(*resolve(server, token_env))


def _step_up(
    term: Terminal,
    as_email: str | None,
    totp: str | None,
    totp_secret_env: str | None,
    device: str | None,
    pin_env: str | None,
) -> StepUp | None:
    """How the admin named with --as confirms it's them, checked before any request: a TOTP code of
    their account (--totp, --totp-secret-env) or its passkey (--device); None without --as."""
    from keyctl.cli.ceremony import totp_codes

    ways = [
        name
        for name, value in (("--totp", totp), ("--totp-secret-env", totp_secret_env), ("--device", device))
        if value
    ]
    if len(ways) > 1:
        raise InvalidInput(
            f"{' and '.join(ways)} exclude each other", "give one way to confirm: a code or a passkey"
        )
    if as_email is None:
        if ways:
            raise InvalidInput(
                f"{ways[0]} confirms the admin named with --as",
                "add --as ADMIN_EMAIL (one of the server's admins)",
            )
        return None
    if device is not None:
        return lambda api: _passkey_step_up(term, api, as_email, device, pin_env)
    code = totp_codes(totp, totp_secret_env)
    if code is None:
        raise InvalidInput(
            "--as needs a way to confirm it's that admin",
            "add --totp NAME, --totp-secret-env VAR or --device SPEC",
        )
    return lambda api: api.step_up_totp(as_email, code())


def _passkey_step_up(term: Terminal, api: AdminApi, email: str, spec: str, pin_env: str | None) -> None:
    """The admin's passkey assertion, claimed for the server's own origin as a browser there would."""
    from keyctl.cli.ceremony import passkey_client
    from keyctl.webauthn import flows
    from keyctl.webauthn import origin as origins

    origin = origins.origin_of(api.server)
    origins.require_secure(origin)
    client, interaction = passkey_client(term, origin, spec, pin_env, 60.0, False)
    try:
        response, _ = flows.assertion(client, api.step_up_passkey_options(email), flows.Request(user=email))
    finally:
        interaction.done()
    api.step_up_passkey_verify(response)


def _confirmed(api: AdminApi, step_up: StepUp | None, action: Callable[[], T]) -> T:
    """Run a sensitive admin action; when the server wants a named admin's step-up and --as says how,
    step up and run it again (once)."""
    try:
        return action()
    except StepUpRequired:
        if step_up is None:
            raise
        step_up(api)
        return action()


def _short(credential_id: str) -> str:
    return credential_id if len(credential_id) <= ID_WIDTH else credential_id[: ID_WIDTH - 1] + "…"


def _day(stamp: object) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' (tables), '-' when absent."""
    return str(stamp)[:16].replace("T", " ") if stamp else "-"


@app.command()
def login(
    server: Annotated[
        str, typer.Option("--server", metavar="URL", help="The server's URL.", show_envvar=False)
    ],
    token_env: TokenEnvOption = None,
) -> None:
    """Store a server and its token for the other admin commands.

    The URL goes to admin.json in the config dir, the token to the OS keyring."""
    from keyctl.admin import AdminApi, check_url, store_profile
    from keyctl.cli.prompt import read_secret

    url = check_url(server)
    token = read_secret("admin token", token_env)
    with AdminApi(url, token) as api:
        api.blocks()  # proves URL and token before anything is stored
    store_profile(url, token)
    Terminal().success(f"admin commands now go to {url} (token in the OS keyring)")


@app.command()
def logout() -> None:
    """Forget the stored server and delete its token from the OS keyring."""
    from keyctl.admin import forget_profile

    server = forget_profile()
    Terminal().status(f"forgot {server}" if server else "no admin server was stored")


@users_app.command("list")
def users_list(
    server: ServerOption = None, token_env: TokenEnvOption = None, as_json: JsonOption = False
) -> None:
    """List the accounts: 2FA, passkey count, last sign-in."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        users = list(api.users())
    if as_json:
        term.json(users)
        return
    rows = [
        (
            u["email"],
            "yes" if u.get("totp_enrolled") else "no",
            len(u.get("passkeys", [])),
            _day(u.get("last_sign_in_at")),
        )
        for u in users
    ]
    term.table(["email", "2fa", "passkeys", "last sign-in"], rows)


@users_app.command("show")
def users_show(
    email: EmailArg,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one account and its passkeys."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        user = api.user(email)
    if as_json:
        term.json(user)
        return
    term.line(f"email         {user['email']}")
    term.line(f"created       {_day(user.get('created_at'))}")
    term.line(f"2fa           {'TOTP enrolled' if user.get('totp_enrolled') else 'not enrolled'}")
    term.line(f"last sign-in  {_day(user.get('last_sign_in_at'))}")
    _passkey_table(term, user.get("passkeys", []))


@users_app.command("add")
def users_add(
    email: EmailArg,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env", metavar="VAR", help="Take the password from this environment variable."
        ),
    ] = None,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account.

    The password comes from --password-env VAR, a prompt, or one line of stdin."""
    from keyctl.cli.prompt import read_secret

    password = read_secret("password", password_env, confirm=sys.stdin.isatty())
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        user = api.add_user(email, password)
    if as_json:
        term.json(user)
    else:
        term.success(f"account {user['email']} created on {api.server}")


@users_app.command("reset-2fa")
def users_reset_2fa(
    email: EmailArg,
    yes: YesOption = False,
    as_admin: AsOption = None,
    totp: StepUpTotpOption = None,
    totp_secret_env: StepUpTotpEnvOption = None,
    device: StepUpDeviceOption = None,
    pin_env: StepUpPinEnvOption = None,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reset an account's 2FA (TOTP and recovery code).

    The account enrolls TOTP again at its next sign-in; its passkeys stay. The server asks for a named
    admin's step-up: --as EMAIL with --totp, --totp-secret-env or --device."""
    term = Terminal(as_json)
    step_up = _step_up(term, as_admin, totp, totp_secret_env, device, pin_env)
    with _api(server, token_env) as api:
        api.user(email)
        term.confirm(f"Reset the 2FA of {email} on {api.server}?", yes)
        user = _confirmed(api, step_up, lambda: api.reset_2fa(email))
    if as_json:
        term.json(user)
    else:
        term.success(f"2FA of {user['email']} reset: it enrolls TOTP again at the next sign-in")


@users_app.command("delete")
def users_delete(
    email: EmailArg,
    yes: YesOption = False,
    as_admin: AsOption = None,
    totp: StepUpTotpOption = None,
    totp_secret_env: StepUpTotpEnvOption = None,
    device: StepUpDeviceOption = None,
    pin_env: StepUpPinEnvOption = None,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
) -> None:
    """Delete an account, its passkeys, sessions and invites.

    Its failed-attempt blocks stay. The audit log keeps its events. The server asks for a named admin's
    step-up: --as EMAIL with --totp, --totp-secret-env or --device."""
    term = Terminal()
    step_up = _step_up(term, as_admin, totp, totp_secret_env, device, pin_env)
    with _api(server, token_env) as api:
        user = api.user(email)
        count = len(user.get("passkeys", []))
        term.confirm(f"Delete the account {user['email']} and its {count} passkey(s) on {api.server}?", yes)
        _confirmed(api, step_up, lambda: api.delete_user(user["email"]))
    term.success(f"deleted the account {user['email']} and its {count} passkey(s)")


@invites_app.command("create")
def invites_create(
    email: EmailArg,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an invite link for a new account.

    The person sets a password and 2FA there."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        invite = api.invite(email)
    if as_json:
        term.json(invite)
    else:
        term.line(str(invite["invite_url"]))
        term.status(
            f"expires {_day(invite.get('expires_at'))} UTC; the link is a secret: send it to {email} only"
        )


@invites_app.command("list")
def invites_list(
    server: ServerOption = None, token_env: TokenEnvOption = None, as_json: JsonOption = False
) -> None:
    """List the pending invites (ids shortened; in full with --json).

    The links themselves are never shown again."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        invites = api.invites()
    if as_json:
        term.json(invites)
    elif not invites:
        term.status("no pending invites")
    else:
        rows = [
            (_short(i["id"]), i["email"], _day(i.get("created_at")), _day(i.get("expires_at")))
            for i in invites
        ]
        term.table(["id", "email", "created", "expires"], rows)


@invites_app.command("revoke")
def invites_revoke(
    which: Annotated[
        str,
        typer.Argument(
            metavar="ID|EMAIL", help="An invite's id (or a unique start of it), or an email: all its invites."
        ),
    ],
    yes: YesOption = False,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
) -> None:
    """Revoke pending invites: their links stop working."""
    from keyctl.errors import NotFound

    term = Terminal()
    with _api(server, token_env) as api:
        invites = api.invites()
        if "@" in which:
            chosen = [i for i in invites if i["email"] == which.strip().lower()]
        else:
            chosen = _unique_start(invites, which, "invite", "keyctl admin invites list")
        if not chosen:
            raise NotFound(f"no pending invite for {which}", "list them with: keyctl admin invites list")
        emails = ", ".join(sorted({i["email"] for i in chosen}))
        term.confirm(f"Revoke {len(chosen)} invite(s) for {emails}?", yes)
        for invite in chosen:
            api.revoke_invite(invite["id"])
    term.success(f"revoked {len(chosen)} invite(s) for {emails}: their links no longer work")


def _unique_start(items: list[dict[str, Any]], given: str, what: str, lister: str) -> list[dict[str, Any]]:
    """The one item whose id is ``given`` or starts with it (a table's shortened id works too)."""
    prefix = given.rstrip("…")
    matches = [i for i in items if i["id"] == prefix] or [i for i in items if i["id"].startswith(prefix)]
    if len(matches) > 1:
        raise InvalidInput(
            f"{given} starts {len(matches)} {what} ids", f"give more of the id (see: {lister})"
        )
    return matches


def _passkey_table(term: Terminal, passkeys: list[dict[str, Any]]) -> None:
    if not passkeys:
        term.status("no passkeys")
        return
    rows = [
        (
            _short(p["id"]),
            p.get("name") or "-",
            "synced" if p.get("backed_up") else "device",
            _day(p.get("last_used_at")),
        )
        for p in passkeys
    ]
    term.table(["id", "name", "kind", "last used"], rows)


@passkeys_app.command("list")
def passkeys_list(
    email: EmailArg,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a user's passkeys (ids shortened; in full with --json)."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        passkeys = api.user(email).get("passkeys", [])
    if as_json:
        term.json(passkeys)
    else:
        _passkey_table(term, passkeys)


def _one_passkey(api: AdminApi, email: str, credential_id: str) -> dict[str, Any]:
    from keyctl.errors import NotFound

    lister = f"keyctl admin passkeys list {email}"
    matches = _unique_start(api.user(email).get("passkeys", []), credential_id, f"{email}'s passkey", lister)
    if not matches:
        raise NotFound(f"{email} has no passkey {credential_id}", f"list them with: {lister}")
    return matches[0]


@passkeys_app.command("rename")
def passkeys_rename(
    email: EmailArg,
    credential_id: Annotated[
        str, typer.Argument(metavar="ID", help="The passkey's id, or a unique start of it.")
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new name (1 to 64 characters).")],
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rename one of a user's passkeys."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        passkey = api.rename_passkey(email, _one_passkey(api, email, credential_id)["id"], name)
    if as_json:
        term.json(passkey)
    else:
        term.success(f"passkey {_short(passkey['id'])} of {email} is now named {passkey['name']!r}")


@passkeys_app.command("delete")
def passkeys_delete(
    email: EmailArg,
    credential_id: Annotated[
        str, typer.Argument(metavar="ID", help="The passkey's id, or a unique start of it.")
    ],
    yes: YesOption = False,
    as_admin: AsOption = None,
    totp: StepUpTotpOption = None,
    totp_secret_env: StepUpTotpEnvOption = None,
    device: StepUpDeviceOption = None,
    pin_env: StepUpPinEnvOption = None,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
) -> None:
    """Delete one of a user's passkeys.

    The server asks for a named admin's step-up: --as EMAIL with --totp, --totp-secret-env or --device."""
    term = Terminal()
    step_up = _step_up(term, as_admin, totp, totp_secret_env, device, pin_env)
    with _api(server, token_env) as api:
        passkey = _one_passkey(api, email, credential_id)
        term.confirm(f"Delete passkey {passkey.get('name') or _short(passkey['id'])} of {email}?", yes)
        _confirmed(api, step_up, lambda: api.delete_passkey(email, passkey["id"]))
    term.success(f"deleted passkey {_short(passkey['id'])} of {email}")


@blocks_app.command("list")
def blocks_list(
    server: ServerOption = None, token_env: TokenEnvOption = None, as_json: JsonOption = False
) -> None:
    """List the brute-force blocks.

    An account's block from one IP, or a whole IP's (with when its allowance has refilled)."""
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        blocks = api.blocks()
    if as_json:
        term.json(blocks)
    elif not blocks:
        term.status("no blocks")
    else:
        term.table(
            ["ip", "account", "since", "until"],
            [
                (b["ip"], b.get("email") or "(the whole IP)", _day(b.get("since")), _day(b.get("until")))
                for b in blocks
            ],
        )


@blocks_app.command("lift")
def blocks_lift(
    ip: Annotated[str, typer.Argument(metavar="IP", help="The blocked IP address.")],
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="Only this account's block from that IP.")
    ] = None,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift the blocks of an IP address.

    The whole IP's block and its accounts' blocks, or with --email that account's only."""
    from keyctl.errors import NotFound

    term = Terminal(as_json)
    with _api(server, token_env) as api:
        ip_blocked = email is None and any(b["kind"] == "ip" and b["ip"] == ip for b in api.blocks())
        count = api.unblock(ip, email)
    if as_json:
        term.json({"unblocked": count, "ip_block_lifted": ip_blocked})
    elif count == 0 and not ip_blocked:
        raise NotFound(
            f"no block for {ip}{f' and {email}' if email else ''}", "list them with: keyctl admin blocks list"
        )
    else:
        whole = " and the block of the whole IP" if ip_blocked else ""
        term.success(f"lifted {count} account block(s) from {ip}{whole}")


def _event_line(event: dict[str, Any]) -> str:
    detail = " ".join(f"{k}={v}" for k, v in (event.get("detail") or {}).items())
    fields = (_day(event.get("time")), event.get("event"), event.get("email") or "-", event.get("ip") or "-")
    return "  ".join(str(field) for field in (*fields, detail)).rstrip()


@app.command()
def audit(
    user: Annotated[
        str | None, typer.Option("--user", metavar="EMAIL", help="Only this account's events.")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", metavar="NAME", help="Only this event (e.g. signin_blocked).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="Only events since: 30m, 12h, 7d or an ISO date."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.2, help="With --follow: seconds between polls.", show_default=True),
    ] = 2.0,
    server: ServerOption = None,
    token_env: TokenEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the audit log, filtered by account, event and time.

    With --follow, keep printing new events until Ctrl-C."""
    import json
    import time

    from keyctl.admin import AuditQuery, since_iso

    query = AuditQuery(user, event, since_iso(since, time.time()) if since else None)
    term = Terminal(as_json)
    with _api(server, token_env) as api:
        events, after = api.audit(query)
        if not follow:
            if as_json:
                term.json(events)
            else:
                for item in events:
                    term.line(_event_line(item))
            return
        while True:  # one JSON object a line (JSON Lines) or one text line per event
            for item in events:
                term.line(json.dumps(item) if as_json else _event_line(item))
            time.sleep(interval)
            events, after = api.audit(query, after)
