"""``keyctl server``: run the reference relying party, and add accounts to its database."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from keyctl.errors import InvalidInput

app = typer.Typer(
    no_args_is_help=False,
    subcommand_metavar="[COMMAND [ARGS]...]",
    help="Run keyctl's reference relying party (the sign-in server).",
)
user_app = typer.Typer(no_args_is_help=True, help="Manage the server's accounts.")
app.add_typer(user_app, name="user")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="FILE|URL",
        help="SQLite database file (default: $KEYCTL_DATA_DIR/server.sqlite3), or a postgresql:// URL.",
    ),
]
DbEnvOption = Annotated[
    str | None,
    typer.Option(
        "--db-env",
        metavar="VAR",
        help="Take --db from this environment variable (a URL with a password stays out of argv).",
    ),
]
CreateOption = Annotated[
    bool, typer.Option("--create", help="With --db: create the file's directory if it does not exist.")
]


def _db(db: str | None, db_env: str | None, create: bool) -> Path | str:
    """The database: a postgresql:// URL, or a file; a --db whose directory is missing is a typo unless
    --create says otherwise (a new empty database would silently stand in for the real one)."""
    from keyctl.server.storage import is_url

    if db_env is not None:
        if db is not None:
            raise InvalidInput("--db and --db-env name the database twice", "pass one of them")
        db = os.environ.get(db_env)
        if not db:
            raise InvalidInput(
                f"environment variable {db_env} is not set or empty",
                f"export {db_env} with the database file or postgresql:// URL, or drop --db-env",
            )
    if db is not None and is_url(db):
        return db
    if db is None:
        from keyctl.config import data_dir

        return data_dir() / "server.sqlite3"
    path = Path(db)
    if not path.parent.is_dir():
        if not create:
            raise InvalidInput(
                f"--db {path}: the directory {path.parent} does not exist",
                "check the path, or add --create to start a new database there",
            )
        path.parent.mkdir(parents=True, mode=0o700)
    return path


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="TCP port (0 picks a free one).", min=0, max=65535)
    ] = 8765,
    db: DbOption = None,
    db_env: DbEnvOption = None,
    create: CreateOption = False,
    rp_id: Annotated[str, typer.Option("--rp-id", help="WebAuthn relying party id.")] = "localhost",
    origin: Annotated[
        str | None, typer.Option("--origin", help="The origin browsers use (default: http://localhost:PORT).")
    ] = None,
    admin_token_env: Annotated[
        str | None,
        typer.Option(
            "--admin-token-env",
            metavar="VAR",
            help="Take the admin API token from this environment variable.",
        ),
    ] = None,
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", help="Requests a minute per IP on the auth endpoints.", min=1)
    ] = 120,
    device_bound_only: Annotated[
        bool,
        typer.Option(
            "--device-bound-only",
            help="Site policy: refuse synced passkeys (backup-eligible), accept security keys and platform "
            "authenticators only.",
        ),
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", help="Server processes sharing the port (one database).", min=1)
    ] = 1,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="CIDR",
            help="A load balancer's address or network: its X-Forwarded-For names the client (repeatable).",
        ),
    ] = None,
    admin_email: Annotated[
        list[str] | None,
        typer.Option(
            "--admin-email",
            help="An admin (repeatable): gets security alerts (risk blocks) in the outbox; that account's "
            "TOTP code or passkey confirms sensitive admin actions (step-up).",
        ),
    ] = None,
    captcha_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--captcha-allow",
            metavar="CIDR",
            help="Addresses never asked for a CAPTCHA, e.g. CI runners (repeatable).",
        ),
    ] = None,
) -> None:
    """Run the server until Ctrl-C or SIGTERM (without a subcommand); `user add` adds accounts."""
    if ctx.invoked_subcommand is not None:
        return
    from keyctl.cli.output import Terminal
    from keyctl.server.run import prepare, serve

    admin_token = None
    if admin_token_env:
        admin_token = os.environ.get(admin_token_env)
        if not admin_token:
            raise InvalidInput(
                f"environment variable {admin_token_env} is not set or empty",
                f"export {admin_token_env} with the admin token, or drop --admin-token-env",
            )
    terminal = Terminal()
    if not _is_loopback(host):
        terminal.warn(f"listening on {host}: reachable from other machines; put TLS in front of it")
    database = _db(db, db_env, create)
    prepared = prepare(
        database,
        host=host,
        port=port,
        rp_id=rp_id,
        origin=origin,
        admin_token=admin_token,
        rate_limit=rate_limit,
        device_bound_only=device_bound_only,
        trusted_proxies=tuple(trusted_proxy or ()),
        admin_emails=tuple(admin_email or ()),
        captcha_exempt=tuple(captcha_allow or ()),
    )
    listening = f", listening on {prepared.local_url}" if origin is not None else ""
    terminal.status(
        f"keyctl server: {prepared.url} (rpId {rp_id}){listening}, database {prepared.policy.db.description}"
    )
    if device_bound_only:
        terminal.status("site policy: device-bound passkeys only (synced passkeys are refused)")
    if admin_token is None:
        terminal.status(f"admin token: {prepared.admin_token}")
    terminal.status(f"unblock links go to {prepared.policy.settings.outbox}; Ctrl-C stops the server")
    if workers > 1:
        terminal.status(f"{workers} worker processes")
    serve(prepared, workers)
    terminal.status("keyctl server stopped")


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    db: DbOption = None,
    db_env: DbEnvOption = None,
    create: CreateOption = False,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env", metavar="VAR", help="Take the password from this environment variable."
        ),
    ] = None,
) -> None:
    """Create an account (password from a prompt, --password-env VAR, or one line of stdin)."""
    from keyctl.cli.output import Terminal
    from keyctl.cli.prompt import read_secret
    from keyctl.server.run import create_user
    from keyctl.server.storage.postgresql import describe

    database = _db(db, db_env, create)  # a --db typo is refused before the password is asked for
    password = read_secret("password", password_env, confirm=sys.stdin.isatty())
    create_user(database, email, password)
    where = database if isinstance(database, Path) else describe(database)
    Terminal().success(f"account {email.strip().lower()} created in {where}")
