"""`keyctl enroll`: security keys for a batch of users, one after the other, from a terminal.

For each user: the next key, a PIN if it has none, an admin-issued enrollment session (the technician
never needs the user's password or 2FA), the registration ceremony of `keyctl register`, a log record.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyctl.cli.ceremony import PinEnvOption, ProfileOption, ServerOption, TimeoutOption
from keyctl.cli.output import JsonOption, Terminal
from keyctl.cli.prompt import read_secret
from keyctl.errors import Canceled, Interrupted, InvalidInput, KeyctlError

if TYPE_CHECKING:
    from keyctl.enroll.batch import KeySource
    from keyctl.enroll.log import Record

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


class TerminalPrompts:
    """Prompts and progress on stderr; PINs from --pin-env, a hidden prompt (new ones twice), or stdin."""

    def __init__(self, term: Terminal, pin_env: str | None) -> None:
        self.term = term
        self.pin_env = pin_env
        self.touched = False

    def say(self, message: str) -> None:
        self.term.status(f"  {message}")

    def new_pin(self, user: str) -> str:
        return read_secret(f"new PIN for {user}'s key", self.pin_env, confirm=True)

    def existing_pin(self, user: str) -> str | None:
        return read_secret("PIN of this key (it has one already)", self.pin_env)

    def generated_pin(self, user: str, pin: str) -> None:
        self.term.err.print(f"  PIN for {user}'s key (shown once, hand it over sealed): {pin}")

    def touch(self) -> None:
        if not self.touched:
            self.touched = True
            self.say("touch the key when it blinks…")


def _users(users: list[str], users_file: Path | None) -> list[str]:
    if users and users_file is not None:
        raise InvalidInput("--user and --users-file exclude each other", "give the users one way")
    lines: list[tuple[str, str]] = [(f"--user {u}", u) for u in users]
    if users_file is not None:
        try:
            text = users_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(
                f"--users-file {users_file} cannot be read ({type(error).__name__})", "check the path"
            ) from None
        lines = [
            (f"{users_file} line {number}", line.strip())
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.strip().startswith("#")
        ]
    if not lines:
        raise InvalidInput("no users to enroll", "give --user EMAIL (repeatable) or --users-file FILE")
    seen: list[str] = []
    for where, raw in lines:
        email = raw.lower()
        if not _EMAIL.fullmatch(email):
            raise InvalidInput(f"{where}: {raw!r} is not an email address", "one email address per user")
        if email in seen:
            raise InvalidInput(f"{where}: {raw} is listed twice", "list each user once")
        seen.append(email)
    return seen


def _keys(devices: list[str], count: int, insert_timeout: float) -> KeySource:
    from keyctl.enroll.batch import FixedKeys, UsbKeys
    from keyctl.hid.spec import parse

    for spec in devices:
        parse(spec)
    if devices == ["usb"]:
        return UsbKeys(insert_timeout)
    if "usb" in devices:
        raise InvalidInput(
            "--device usb waits for each next key and cannot be mixed with other devices",
            "give --device usb alone, or one explicit device per user",
        )
    if len(devices) not in (1, count):
        raise InvalidInput(
            f"{len(devices)} --device values for {count} users", "give one device for all, or one per user"
        )
    return FixedKeys(devices)


def enroll(
    server: ServerOption,
    user: Annotated[
        list[str], typer.Option("--user", help="A user (email) to enroll a key for; repeatable, in order.")
    ] = [],  # noqa: B006  (Typer's way to declare a repeatable option)
    users_file: Annotated[
        Path | None, typer.Option("--users-file", help="A file with one email per line ('#' comments).")
    ] = None,
    profile: ProfileOption = "keyctl",
    device: Annotated[
        list[str],
        typer.Option(
            "--device",
            help="usb (wait for each next new key), or explicit devices: one for all users or one per user.",
        ),
    ] = ["usb"],  # noqa: B006
    pin_policy: Annotated[
        Path | None, typer.Option("--pin-policy", help="PIN policy TOML ([pin] source, min_length, ...).")
    ] = None,
    pin_env: PinEnvOption = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="Enrollment log to append to: .csv, .json or .jsonl.")
    ] = None,
    admin_token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            "--admin-token-env",
            metavar="VAR",
            help="The admin token's environment variable (else $KEYCTL_ADMIN_TOKEN, the keyring, a prompt).",
        ),
    ] = None,
    timeout: TimeoutOption = 60.0,
    insert_timeout: Annotated[
        float, typer.Option("--insert-timeout", min=1, help="Seconds to wait for the next USB key.")
    ] = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Enroll security keys for a batch of users (admin-issued enrollment sessions, one key per user)."""
    from keyctl.admin import resolve
    from keyctl.enroll import log as enrollment_log
    from keyctl.enroll import pins
    from keyctl.enroll.batch import Batch, enroll_user
    from keyctl.webauthn import origin as origins
    from keyctl.webauthn import profile as profiles

    term = Terminal(as_json)
    emails = _users(user, users_file)
    keys = _keys(device, len(emails), insert_timeout)
    policy = pins.load(pin_policy) if pin_policy is not None else pins.Policy()
    if policy.source == "generate" and pin_env:
        raise InvalidInput(
            "--pin-env and a PIN policy with source = 'generate' exclude each other", "drop one"
        )
    if policy.source == "generate" and not term.err.is_terminal:
        raise InvalidInput(
            "generated PINs are shown only on a terminal (stderr is not one)",
            "run keyctl enroll in a terminal, or use source = 'prompt' with --pin-env VAR",
        )
    if log is not None:
        enrollment_log.check_path(log)
    the_profile = profiles.load(profile)
    # The token as keyctl admin takes it (stdin is not used: the technician may need it for PINs).
    _, admin_token = resolve(
        server, admin_token_env, ask=lambda: read_secret("admin API token", stdin_line=False)
    )
    claimed = origins.origin_of(server)
    origins.require_secure(claimed)
    prompts = TerminalPrompts(term, pin_env)
    batch = Batch(
        server=server,
        profile=the_profile,
        origin=claimed,
        admin_token=admin_token,
        keys=keys,
        prompts=prompts,
        pin_policy=policy,
        timeout_s=timeout,
    )
    records: list[Record] = []
    first_error: KeyctlError | None = None
    for index, email in enumerate(emails):
        term.err.rule(f"user {index + 1} of {len(emails)}: {email}", align="left")
        if device == ["usb"]:
            prompts.say("insert a security key not used yet in this batch…")
        prompts.touched = False
        record, error = enroll_user(batch, index, email)
        records.append(record)
        if log is not None:
            enrollment_log.append(log, record)
        if error is not None:
            first_error = first_error or error
            term.err.print(f"  failed: {record.detail}", style="red")
            if isinstance(error, (Canceled, Interrupted)):  # Ctrl-C or Ctrl-D at a prompt stops the batch
                term.warn(f"batch stopped: {len(emails) - index - 1} users not attempted")
                break
        elif record.result == "already_registered":
            term.warn(f"{email}: {record.detail} (not registered again)")
        else:
            term.success("  enrolled: passkey registered")
    _summary(term, records, log)
    if first_error is not None:
        failed = [r for r in records if r.result == "failed"]
        raise type(first_error)(
            f"{len(failed)} of {len(records)} users not enrolled "
            f"(first: {failed[0].user}: {failed[0].detail})",
            f"see {log}" if log is not None else "rerun keyctl enroll for those users",
        )


def _summary(term: Terminal, records: list[Record], log: Path | None) -> None:
    counts = {
        result: sum(r.result == result for r in records)
        for result in ("enrolled", "already_registered", "failed")
    }
    from keyctl.audit import mds

    metadata = mds.current()

    def model(aaguid: str | None) -> str | None:
        return metadata.model_name(aaguid) if metadata and aaguid else None

    if term.json_mode:
        users = [{**r.as_json(), "model": model(r.aaguid)} for r in records]
        term.json({"ok": counts["failed"] == 0, **counts, "users": users})
    else:
        term.table(
            ("user", "result", "key", "aaguid", "model", "credential id"),
            [
                (r.user, r.result.replace("_", " "), r.key, r.aaguid, model(r.aaguid) or "-", r.credential_id)
                for r in records
            ],
        )
    where = f"; log: {log}" if log is not None else ""
    term.status(
        f"{counts['enrolled']} enrolled, {counts['already_registered']} already registered, "
        f"{counts['failed']} failed, of {len(records)} users{where}"
    )
