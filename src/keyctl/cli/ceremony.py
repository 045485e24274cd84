"""`keyctl register`, `keyctl login` and `keyctl demo`: WebAuthn ceremonies from the terminal.

keyctl plays the browser's role: options from the server, the origin/rpId check, the authenticator,
the response back. Heavy libraries (fido2, httpx) are imported inside the commands.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer

from keyctl.cli.output import ENV_DEVICE, JsonOption, Terminal, check_device
from keyctl.cli.prompt import read_secret
from keyctl.errors import InvalidInput, NotFound, PasskeyCanceled

if TYPE_CHECKING:
    from rich.status import Status

    from keyctl.webauthn.ceremony import Account
    from keyctl.webauthn.flows import Client, Result
    from keyctl.webauthn.profile import Profile
    from keyctl.webauthn.session import Session
    from keyctl.webauthn.signin import CodeSource, SignedIn

# Required options: show_envvar=False, or click 8.2 ends "Missing option" errors with "(env var: 'None')".
ServerOption = Annotated[
    str,
    typer.Option("--server", help="The server's URL, e.g. https://id.example.com.", show_envvar=False),
]
ProfileOption = Annotated[
    str,
    typer.Option("--profile", help="How the server exposes the ceremonies: a built-in name or a TOML file."),
]
CeremonyDeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        "-d",
        metavar="SPEC",
        envvar=ENV_DEVICE,
        show_envvar=False,
        show_default="usb",
        callback=check_device,
        help=f"The authenticator: usb[:PATH], udp:HOST:PORT, virtual:NAME or platform (else ${ENV_DEVICE}).",
    ),
]
# The name --device had before it was one option everywhere; hidden, kept for scripts.
AuthenticatorAlias = Annotated[
    str | None, typer.Option("--authenticator", hidden=True, callback=check_device)
]
PinEnvOption = Annotated[
    str | None,
    typer.Option(
        "--pin-env",
        metavar="VAR",
        help="Read the key's PIN from this environment variable (else stdin/prompt).",
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for a touch before giving up.")
]
OriginOption = Annotated[
    str | None,
    typer.Option("--origin", help="Origin to claim instead of the server URL's (needs the next flag)."),
]
InsecureOption = Annotated[
    bool,
    typer.Option(
        "--insecure-origin-override", help="Allow --origin (weakens the anti-phishing check; warns)."
    ),
]
CookieJarOption = Annotated[
    Path | None,
    typer.Option("--cookie-jar", help="Read and save cookies here (Netscape format, mode 0600, curl -b)."),
]
PrintSessionOption = Annotated[
    bool, typer.Option("--print-session", help="Print only the session cookie's value on stdout.")
]
PasswordEnvOption = Annotated[
    str | None,
    typer.Option(
        "--password-env", metavar="VAR", help="Sign in with the password in this environment variable."
    ),
]
TotpOption = Annotated[
    str | None, typer.Option("--totp", help="2FA: a code from this keyctl TOTP vault entry.")
]
TotpSecretEnvOption = Annotated[
    str | None,
    typer.Option(
        "--totp-secret-env",
        metavar="VAR",
        help="2FA: codes from the TOTP secret (base32 or otpauth URI) in this environment variable.",
    ),
]
RecoveryEnvOption = Annotated[
    str | None,
    typer.Option(
        "--recovery-code-env", metavar="VAR", help="2FA: the recovery code in this environment variable."
    ),
]
StepUpDeviceOption = Annotated[
    str | None,
    typer.Option(
        "--step-up-device",
        metavar="SPEC",
        callback=check_device,
        help="In a reused session: confirm it's you with one of the account's passkeys on this authenticator "
        "when the server asks (the PIN: --pin-env).",
    ),
]
SaveTotpOption = Annotated[
    str | None,
    typer.Option("--save-totp", help="First sign-in: store the enrolled TOTP secret in the vault as NAME."),
]


class TerminalInteraction:
    """Touch and PIN prompts on stderr; the PIN from --pin-env, stdin, or a hidden prompt."""

    def __init__(self, term: Terminal, pin_env: str | None) -> None:
        self.term = term
        self.pin_env = pin_env
        self._spinner: Status | None = None
        self._asking = False
        # touch() runs on the keepalive thread, asking() on a virtual key's prompt thread
        self._lock = threading.Lock()

    def asking(self, open_question: bool) -> None:
        """A virtual key's [y/N] question (``--presence prompt``) is on the terminal: no spinner over it."""
        with self._lock:
            self._asking = open_question
        if open_question:
            self.done()

    def touch(self) -> None:
        with self._lock:
            if self._spinner is not None or self._asking:
                return
            message = "Touch your authenticator to continue…"
            if sys.stderr.isatty():  # a spinner; else one line (without importing rich)
                self._spinner = self.term.err.status(message)
                self._spinner.start()
            else:
                self.term.status(message)

    def pin(self) -> str | None:
        self.done()
        return read_secret("PIN of your security key", self.pin_env)

    def choose(self, accounts: Sequence[Account]) -> int | None:
        """Several passkeys fit: the person at the terminal picks one (None without a terminal)."""
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return None
        self.done()
        self.term.status("Several passkeys on this authenticator fit this sign-in:")
        for number, account in enumerate(accounts, 1):
            self.term.status(f"  {number}. {account.label()}")
        while True:
            sys.stderr.write(f"Choose an account [1-{len(accounts)}]: ")
            sys.stderr.flush()
            answer = sys.stdin.readline()
            if not answer:  # end of input (Ctrl-D)
                raise PasskeyCanceled("Request canceled", "run the command again to retry")
            if answer.strip().isdigit() and 1 <= int(answer) <= len(accounts):
                return int(answer) - 1

    def done(self) -> None:
        with self._lock:
            if self._spinner is not None:
                self._spinner.stop()
                self._spinner = None


def _device_spec(device: str | None, authenticator: str | None) -> str:
    if device and authenticator and device != authenticator:
        raise InvalidInput(
            f"--device {device} and --authenticator {authenticator} disagree",
            "give --device only (--authenticator is its old name)",
        )
    return device or authenticator or "usb"


def _prepare(
    term: Terminal, server: str, profile_spec: str, origin: str | None, insecure: bool
) -> tuple[Profile, str]:
    """The profile and the origin to claim, after the browser's checks on the server URL."""
    from keyctl.webauthn import origin as origins
    from keyctl.webauthn import profile as profiles

    profile = profiles.load(profile_spec)
    server_origin = origins.origin_of(server)
    if origin is not None and not insecure:
        raise InvalidInput(
            "--origin needs --insecure-origin-override",
            "drop --origin: the origin is the server URL's, as in a browser",
        )
    if origin is None:
        origins.require_secure(server_origin)
        return profile, server_origin
    claimed = origins.origin_of(origin, "--origin")
    term.warn(f"claiming origin {claimed} for {server_origin}: the anti-phishing check is weakened")
    return profile, claimed


def _open_session(server: str, profile: Profile, origin: str, cookie_jar: Path | None) -> Session:
    from keyctl.webauthn.session import Session

    session = Session(server, profile, origin)
    if cookie_jar is not None:
        session.load_cookies(cookie_jar)
    return session


def _finish(
    term: Terminal,
    session: Session,
    result: Result,
    cookie_jar: Path | None,
    print_session: bool,
    recovery_code: str | None = None,
) -> None:
    if cookie_jar is not None:
        session.save_cookies(cookie_jar)
    if print_session:
        name = session.profile.session_cookie
        value = session.cookie(name) if name else None
        if value is None:
            raise NotFound(
                f"the server set no session cookie{f' named {name!r}' if name else ''}",
                "set [session] cookie = NAME in the server profile",
            )
        term.line(value)
    elif term.json_mode:
        term.json(
            {
                **result.as_json(),
                **_model(result.server),
                **_session_expiry(result.server),
                **({"recovery_code": recovery_code} if recovery_code else {}),
            }
        )
    else:
        if result.ceremony == "register":
            term.line(f"registered a passkey for {result.user} at {result.rp_id}")
        else:
            how = "a passkey" if result.method == "passkey" else f"password and {result.method}"
            term.line(f"signed in as {result.user or '(unknown user)'} with {how}")
        if result.credential_id:
            term.line(f"credential {result.credential_id} ({result.authenticator})")
    if recovery_code and not term.json_mode:
        term.line(f"recovery code (shown once, keep it safe): {recovery_code}")


def _session_expiry(verdict: object) -> dict[str, str]:
    """When the new session ends, when the server's answer says (keyctl's reference server does, under
    ``session``): after a time without requests, and at the latest."""
    session = verdict.get("session") if isinstance(verdict, dict) else None
    if not isinstance(session, dict):
        return {}
    keys = ("idle_expires_at", "absolute_expires_at")
    return {key: session[key] for key in keys if isinstance(session.get(key), str)}


def _model(verdict: object) -> dict[str, str | None]:
    """The registered passkey's AAGUID and FIDO metadata model, when the server's answer names the AAGUID
    (keyctl's reference server does, under ``passkey``)."""
    passkey = verdict.get("passkey") if isinstance(verdict, dict) else None
    aaguid = passkey.get("aaguid") if isinstance(passkey, dict) else None
    if not isinstance(aaguid, str):
        return {}
    from keyctl.audit import mds
    from keyctl.errors import KeyctlError

    try:
        metadata = mds.current()
        model = metadata.model_name(aaguid) if metadata else None
    except KeyctlError:  # not an AAGUID, or an unreadable cache: the model stays unknown
        model = None
    return {"aaguid": aaguid, "model": model}


def passkey_client(
    term: Terminal,
    origin: str,
    spec: str,
    pin_env: str | None,
    timeout: float,
    insecure: bool,
) -> tuple[Client, TerminalInteraction]:
    from keyctl.webauthn import ceremony, flows

    interaction = TerminalInteraction(term, pin_env)
    client = flows.Client(
        origin=origin,
        authenticator=spec,
        open_device=lambda: ceremony.open_authenticator(spec),
        interaction=interaction,
        timeout_s=timeout,
        insecure=insecure,
        choose=interaction.choose,
    )
    if spec.startswith("virtual:"):  # an in-process virtual key may ask its [y/N] here (--presence prompt)
        from keyctl.hid import prompt

        prompt.question_hook = interaction.asking
    return client, interaction


def _wait_for_next_step(seconds: float) -> None:
    """The last TOTP code was already sent: wait for the next step, with a countdown on a terminal."""
    import time

    end = time.time() + seconds
    while (left := end - time.time()) > 0:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rthat TOTP code was already used; the next one comes in {left:2.0f} s ")
            sys.stderr.flush()
        time.sleep(min(1.0, left))
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")


def _password_sign_in(
    term: Terminal,
    session: Session,
    user: str,
    password_env: str | None,
    totp: str | None,
    totp_secret_env: str | None,
    recovery_code_env: str | None,
    save_totp: str | None,
) -> SignedIn:
    from keyctl.webauthn import signin

    given = [f for f, v in (("--totp", totp), ("--totp-secret-env", totp_secret_env)) if v]
    if recovery_code_env:
        given.append("--recovery-code-env")
    if len(given) > 1:
        raise InvalidInput(f"{' and '.join(given)} exclude each other", "give one 2FA method")
    code = totp_codes(totp, totp_secret_env)
    credentials = signin.Password(
        email=user,
        # stdin may carry the key's PIN, so a password comes from the variable or a terminal prompt only
        password=read_secret("password", password_env, stdin_line=False),
        totp=code,
        recovery_code=read_secret("recovery code", recovery_code_env) if recovery_code_env else None,
        enroll=signin.vault_enroll(save_totp, _wait_for_next_step) if save_totp else None,
        new_password=lambda: read_secret("new password", confirm=True, stdin_line=False),
    )
    return signin.password_sign_in(session, credentials, term.status)


def totp_codes(totp: str | None, totp_secret_env: str | None) -> CodeSource | None:
    """Codes of ``--totp NAME`` (the vault) or ``--totp-secret-env VAR``; None when neither is given."""
    from keyctl.webauthn import signin

    if totp and totp_secret_env:
        raise InvalidInput("--totp and --totp-secret-env exclude each other", "give one 2FA method")
    if totp:
        return signin.vault_code(totp, _wait_for_next_step)
    if totp_secret_env:
        return signin.env_code(totp_secret_env, _wait_for_next_step)
    return None


def _step_up(
    session: Session, user: str, totp: str | None, totp_secret_env: str | None, passkey: Client | None
) -> Callable[[], None] | None:
    """How a reused session confirms its user when the server asks: a code of --totp or
    --totp-secret-env, or an assertion of one of the account's passkeys (--step-up-device)."""
    from keyctl.webauthn import flows, signin

    if passkey is not None and (totp or totp_secret_env):
        given = "--totp" if totp else "--totp-secret-env"
        raise InvalidInput(f"{given} and --step-up-device exclude each other", "give one way to confirm")
    if passkey is not None:
        return lambda: flows.step_up(session, passkey, user)
    code = totp_codes(totp, totp_secret_env)
    if code is None:
        return None
    return lambda: signin.step_up(session, code)


def register(
    server: ServerOption,
    user: Annotated[
        str, typer.Option("--user", help="The account (email) to add the passkey to.", show_envvar=False)
    ],
    name: Annotated[str | None, typer.Option("--name", help="A name for the passkey.")] = None,
    resident: Annotated[
        bool | None,
        typer.Option(
            "--resident/--no-resident", help="Ask for a discoverable passkey (default: the server's)."
        ),
    ] = None,
    uv: Annotated[
        str | None,
        typer.Option(
            "--uv",
            click_type=click.Choice(["required", "preferred", "discouraged"]),
            help="User verification to ask for (default: the server's).",
        ),
    ] = None,
    profile: ProfileOption = "keyctl",
    device: CeremonyDeviceOption = None,
    authenticator: AuthenticatorAlias = None,
    pin_env: PinEnvOption = None,
    timeout: TimeoutOption = 60.0,
    origin: OriginOption = None,
    insecure_origin_override: InsecureOption = False,
    cookie_jar: CookieJarOption = None,
    print_session: PrintSessionOption = False,
    password_env: PasswordEnvOption = None,
    totp: TotpOption = None,
    totp_secret_env: TotpSecretEnvOption = None,
    recovery_code_env: RecoveryEnvOption = None,
    save_totp: SaveTotpOption = None,
    step_up_device: StepUpDeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a passkey for an account (signing in with password and 2FA first if the server needs it)."""
    from keyctl.webauthn import flows

    term = Terminal(as_json)
    spec = _device_spec(device, authenticator)
    the_profile, claimed = _prepare(term, server, profile, origin, insecure_origin_override)
    client, interaction = passkey_client(term, claimed, spec, pin_env, timeout, insecure_origin_override)
    request = flows.Request(user=user, name=name, resident=resident, uv=uv)  # type: ignore[arg-type]
    with _open_session(server, the_profile, claimed, cookie_jar) as session:
        recovery_code = None
        has_session = bool(the_profile.session_cookie and session.cookie(the_profile.session_cookie))
        # With a session, --totp/--totp-secret-env alone confirm the user if the server asks (step-up).
        step_up_only = has_session and not (password_env or recovery_code_env or save_totp)
        confirm = None  # the same prompts and origin, on the other authenticator
        if step_up_device is not None:
            from keyctl.webauthn import ceremony

            confirm = dataclasses.replace(
                client,
                authenticator=step_up_device,
                open_device=lambda: ceremony.open_authenticator(step_up_device),
            )
        step_up = _step_up(session, user, totp, totp_secret_env, confirm) if step_up_only else None
        wants_password = bool(password_env or totp or totp_secret_env or recovery_code_env or save_totp)
        if (wants_password and not step_up_only) or (the_profile.signin and not has_session):
            signed_in = _password_sign_in(
                term, session, user, password_env, totp, totp_secret_env, recovery_code_env, save_totp
            )
            recovery_code = signed_in.recovery_code
        elif has_session:
            from keyctl.webauthn import signin

            signin.require_account(session, user, str(cookie_jar))
        try:
            result = flows.register(session, client, request, step_up)
        finally:
            interaction.done()
        _finish(term, session, result, cookie_jar, print_session, recovery_code)


def login(
    server: ServerOption,
    user: Annotated[
        str | None, typer.Option("--user", help="The account (email); without it, a username-less login.")
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("--account", help="Username-less login: the passkey of this user name, if several fit."),
    ] = None,
    credential: Annotated[
        str | None, typer.Option("--credential", help="Login with the passkey of this credential id.")
    ] = None,
    profile: ProfileOption = "keyctl",
    device: CeremonyDeviceOption = None,
    authenticator: AuthenticatorAlias = None,
    pin_env: PinEnvOption = None,
    timeout: TimeoutOption = 60.0,
    origin: OriginOption = None,
    insecure_origin_override: InsecureOption = False,
    cookie_jar: CookieJarOption = None,
    print_session: PrintSessionOption = False,
    password_env: PasswordEnvOption = None,
    totp: TotpOption = None,
    totp_secret_env: TotpSecretEnvOption = None,
    recovery_code_env: RecoveryEnvOption = None,
    save_totp: SaveTotpOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign in with a passkey, or with --password-env and 2FA (exit code 0 only on a verified sign-in)."""
    from keyctl.webauthn import flows

    term = Terminal(as_json)
    spec = _device_spec(device, authenticator)
    the_profile, claimed = _prepare(term, server, profile, origin, insecure_origin_override)
    with _open_session(server, the_profile, claimed, cookie_jar) as session:
        if password_env or totp or totp_secret_env or recovery_code_env or save_totp:
            if user is None:
                raise InvalidInput("a password sign-in needs --user", "add --user EMAIL")
            signed_in = _password_sign_in(
                term, session, user, password_env, totp, totp_secret_env, recovery_code_env, save_totp
            )
            result = flows.Result(
                ceremony="login",
                verified=True,
                user=signed_in.user,
                method=signed_in.method,
                credential_id=None,
                authenticator=None,
                rp_id=None,
                server=signed_in.server,
            )
            _finish(term, session, result, cookie_jar, print_session, signed_in.recovery_code)
            if isinstance(signed_in.server, dict) and signed_in.server.get("passkey_prompt"):
                term.status(f"the server suggests a passkey: keyctl register --server {server} --user {user}")
            return
        client, interaction = passkey_client(term, claimed, spec, pin_env, timeout, insecure_origin_override)
        request = flows.Request(user=user, account=account, credential=credential)
        try:
            result = flows.login(session, client, request)
        except flows.AmbiguousAccount as error:
            if as_json:
                term.json({"error": error.message, "candidates": [c.as_json() for c in error.candidates]})
            raise
        finally:
            interaction.done()
        _finish(term, session, result, cookie_jar, print_session)


def demo(as_json: JsonOption = False) -> None:
    """The whole journey on a throwaway server: account, password + TOTP, passkey, sign-in with it."""
    from keyctl.webauthn import demo as journey

    term = Terminal(as_json)
    result = journey.run(term.status)
    if as_json:
        term.json(
            {
                "server": result.server_url,
                "user": result.user,
                "credential_id": result.credential_id,
                "signed_in": result.signed_in,
            }
        )
    else:
        term.line(f"demo complete: {result.user} signed in with a passkey, everything cleaned up")
