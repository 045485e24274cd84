"""Server profiles: one TOML file describes how a server exposes the WebAuthn ceremonies.

A profile names, for registration and for login, the begin step (which returns the options) and the
finish step (which takes the credential), where the user name goes, where the options sit in the
response, how the credential is wrapped in the finish body, how the server says "verified", which
machine-readable error codes it uses, and its session and CSRF cookies. Built-in profiles live next to
this module in ``profiles/*.toml``; ``--profile`` takes one of their names or a path to a TOML file.

Values in ``body`` and ``query`` tables that are exactly one placeholder are replaced by a typed value
(a placeholder whose value is unknown drops its key): ``{user}``, ``{name}``, ``{uv}``,
``{resident_key}`` (``required``/``discouraged``) and ``{require_resident_key}`` (a boolean).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyctl.errors import InvalidInput, NotFound

PLACEHOLDERS = ("{user}", "{name}", "{uv}", "{resident_key}", "{require_resident_key}")
DEFAULT_PROFILE = "keyctl"


class ServerError(enum.Enum):
    """What a server's refusal means, in the words of the error catalogue."""

    NO_CREDENTIAL = "no-credential"
    CREDENTIAL_EXCLUDED = "credential-excluded"
    PASSKEY_LIMIT = "passkey-limit"
    SESSION_EXPIRED = "session-expired"
    VERIFICATION_FAILED = "verification-failed"
    SIGN_IN_FAILED = "sign-in-failed"
    STEP_UP_REQUIRED = "step-up-required"  # a sensitive action needs a fresh TOTP code or passkey
    SERVER_UNAVAILABLE = "server-unavailable"
    ORIGIN_REFUSED = "origin-refused"  # the server serves another origin than the one keyctl claims


@dataclass(frozen=True)
class Step:
    """One HTTP request of a ceremony."""

    method: str
    path: str
    body: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    options: str = ""  # begin steps: dotted path of the options in the response ("" = the whole body)
    credential: str = ""  # finish steps: dotted path of the credential in the body ("" = the body itself)
    status: Mapping[int, ServerError] = field(default_factory=dict)  # HTTP status -> meaning


@dataclass(frozen=True)
class Ceremony:
    begin: Step
    finish: Step


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    source: str  # "built-in" or the file it was read from
    register: Ceremony
    login: Ceremony
    verdict: str  # dotted path in the finish response
    verdict_equals: Any  # the value there that means "verified"
    verdict_user: str = ""  # dotted path of the signed-in user's name in the verdict, if the server says
    error_code: str = ""  # dotted path of a machine-readable error code in an error body
    error_message: str = ""  # dotted path of a human-readable error message
    error_codes: Mapping[str, ServerError] = field(default_factory=dict)
    session_cookie: str = ""
    account: str = ""  # GET path answering with the session's account (checked before reusing a session)
    account_user: str = ""  # dotted path of the account's name in that answer
    csrf_cookie: str = ""
    csrf_header: str = ""
    signin: Mapping[str, str] = field(default_factory=dict)  # reference-server sign-in endpoints
    enroll: Mapping[str, str] = field(default_factory=dict)  # admin enrollment session ({user} in path)
    admin: Mapping[str, str] = field(default_factory=dict)  # admin API: users (paged), audit (log)


# The package's own folder, not importlib.resources: that import costs every sign-in process a few ms,
# and keyctl is never run from a zip.
BUILTIN_DIR = Path(__file__).parent / "profiles"


def builtin_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in BUILTIN_DIR.iterdir() if p.name.endswith(".toml"))


def load(spec: str = DEFAULT_PROFILE) -> Profile:
    """A built-in profile by name, or a profile file by path (anything with a '/' or ending in .toml)."""
    if "/" in spec or spec.endswith(".toml"):
        path = Path(spec).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(
                f"server profile file {spec} does not exist", "give a path to a TOML profile file"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(
                f"server profile file {spec} cannot be read ({type(error).__name__})",
                "check the path and its permissions",
            ) from None
        return parse(text, source=str(path))
    if spec not in builtin_names():
        raise NotFound(
            f"no built-in server profile named {spec!r}",
            f"use one of {', '.join(builtin_names())}, or a path to a TOML profile file",
        )
    text = (BUILTIN_DIR / f"{spec}.toml").read_text(encoding="utf-8")
    return parse(text, source="built-in")


class _Reader:
    """Typed access to a parsed TOML document, with errors that name the offending key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> InvalidInput:
        return InvalidInput(
            f"server profile {self.source}: {key} {problem}",
            "fix the profile (see Server profiles in docs/signin.md)",
        )

    def table(self, doc: Mapping[str, Any], key: str, where: str, required: bool = True) -> dict[str, Any]:
        value = doc.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", "must be a table" if value is not None else "is missing")
        return value

    def text(self, doc: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
        value = doc.get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"{where}{key}", "must be a string" if value is not None else "is missing")
        return value

    def template(self, doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = self.table(doc, key, where, required=False)
        self._check_placeholders(value, f"{where}{key}")
        return value

    def _check_placeholders(self, value: Any, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self._check_placeholders(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._check_placeholders(v, f"{where}[{i}]")
        elif (
            isinstance(value, str)
            and value.startswith("{")
            and value.endswith("}")
            and value not in PLACEHOLDERS
        ):
            raise self.fail(where, f"uses unknown placeholder {value} (known: {', '.join(PLACEHOLDERS)})")

    def meaning(self, value: Any, where: str) -> ServerError:
        try:
            return ServerError(value)
        except ValueError:
            known = ", ".join(e.value for e in ServerError)
            raise self.fail(where, f"is {value!r}, not one of {known}") from None

    def step(self, doc: Mapping[str, Any], key: str, where: str) -> Step:
        table = self.table(doc, key, where)
        here = f"{where}{key}."
        method = self.text(table, "method", here, "POST").upper()
        if method not in ("GET", "POST"):
            raise self.fail(f"{here}method", "must be GET or POST")
        path = self.text(table, "path", here)
        if not path.startswith("/"):
            raise self.fail(f"{here}path", "must start with '/'")
        status: dict[int, ServerError] = {}
        for code, meaning in self.table(table, "status", here, required=False).items():
            if not (code.isdigit() and 400 <= int(code) <= 599):
                raise self.fail(f"{here}status.{code}", "must be an HTTP error status (400-599)")
            status[int(code)] = self.meaning(meaning, f"{here}status.{code}")
        return Step(
            method=method,
            path=path,
            body=self.template(table, "body", here),
            query=self.template(table, "query", here),
            options=self.text(table, "options", here, ""),
            credential=self.text(table, "credential", here, ""),
            status=status,
        )

    def ceremony(self, doc: Mapping[str, Any], key: str) -> Ceremony:
        table = self.table(doc, key, "")
        return Ceremony(self.step(table, "begin", f"{key}."), self.step(table, "finish", f"{key}."))


def parse(text: str, source: str) -> Profile:
    """Parse and validate a profile; every problem is an InvalidInput naming the key."""
    reader = _Reader(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(
            f"server profile {source} is not valid TOML ({error})", "fix the TOML syntax"
        ) from None
    response = reader.table(doc, "response", "")
    if "verdict_equals" not in response:
        raise reader.fail("response.verdict_equals", "is missing")
    session = reader.table(doc, "session", "", required=False)
    error_codes = {
        code: reader.meaning(meaning, f"response.error_codes.{code}")
        for code, meaning in reader.table(response, "error_codes", "response.", required=False).items()
    }
    signin = reader.table(doc, "signin", "", required=False)
    enroll = reader.table(doc, "enroll", "", required=False)
    admin = reader.table(doc, "admin", "", required=False)
    for table, paths in (("signin", signin), ("enroll", enroll), ("admin", admin)):
        for key, value in paths.items():
            if not (isinstance(value, str) and value.startswith("/")):
                raise reader.fail(f"{table}.{key}", "must be a path starting with '/'")
    csrf_cookie = reader.text(session, "csrf_cookie", "session.", "")
    csrf_header = reader.text(session, "csrf_header", "session.", "")
    if bool(csrf_cookie) != bool(csrf_header):
        raise reader.fail("session.csrf_header", "and session.csrf_cookie must be given together")
    account = reader.text(session, "account", "session.", "")
    account_user = reader.text(session, "account_user", "session.", "")
    if account and not account.startswith("/"):
        raise reader.fail("session.account", "must be a path starting with '/'")
    if bool(account) != bool(account_user):
        raise reader.fail("session.account_user", "and session.account must be given together")
    return Profile(
        name=reader.text(doc, "name", ""),
        description=reader.text(doc, "description", "", ""),
        source=source,
        register=reader.ceremony(doc, "register"),
        login=reader.ceremony(doc, "login"),
        verdict=reader.text(response, "verdict", "response."),
        verdict_equals=response["verdict_equals"],
        verdict_user=reader.text(response, "user", "response.", ""),
        error_code=reader.text(response, "error_code", "response.", ""),
        error_message=reader.text(response, "error_message", "response.", ""),
        error_codes=error_codes,
        session_cookie=reader.text(session, "cookie", "session.", ""),
        account=account,
        account_user=account_user,
        csrf_cookie=csrf_cookie,
        csrf_header=csrf_header,
        signin=signin,
        enroll=enroll,
        admin=admin,
    )


def fill(template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Replace placeholders in a body/query template; a placeholder without a value drops its key."""

    def one(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in ((k, one(v)) for k, v in value.items()) if v is not None}
        if isinstance(value, list):
            return [one(v) for v in value]
        if isinstance(value, str) and value in PLACEHOLDERS:
            return values.get(value[1:-1])
        return value

    filled: dict[str, Any] = one(dict(template))
    return filled


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document (``""`` is the document itself); None if absent."""
    for part in path.split(".") if path else ():
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def bury(value: Any, path: str, into: Mapping[str, Any]) -> dict[str, Any]:
    """``into`` with ``value`` placed at a dotted path (``""``: ``value`` itself, merged over ``into``)."""
    if not path:
        return {**into, **value}
    head, _, rest = path.partition(".")
    inner = into.get(head)
    return {**into, head: bury(value, rest, inner if isinstance(inner, dict) else {}) if rest else value}
