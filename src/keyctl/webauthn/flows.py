"""Registration and login as a browser does them: options from the server, the origin/rpId check, the
authenticator, the response back to the server, and the server's verdict."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Literal

from fido2.ctap import CtapDevice
from fido2.utils import websafe_encode
from fido2.webauthn import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from keyctl.errors import InvalidInput, NoCredential, ServerUnavailable, StepUpRequired, VerificationFailed
from keyctl.webauthn import ceremony
from keyctl.webauthn.origin import check_rp_id
from keyctl.webauthn.profile import Step, bury, dig, fill
from keyctl.webauthn.session import Session

logger = logging.getLogger(__name__)

UV_CHOICES = ("required", "preferred", "discouraged")


@dataclass(frozen=True)
class Client:
    """Everything a ceremony needs on the client side, besides the server session."""

    origin: str
    authenticator: str  # the --authenticator spec, reported in results
    open_device: Callable[[], CtapDevice]
    interaction: ceremony.Interaction
    timeout_s: float = 60.0
    insecure: bool = False  # --insecure-origin-override
    # several passkeys match the login: a person chooses one (the index), or None where nobody can
    choose: Callable[[Sequence[ceremony.Account]], int | None] | None = None


@dataclass(frozen=True)
class Request:
    user: str | None = None
    name: str | None = None  # the passkey's display name (registration)
    resident: bool | None = None  # None: as the server asks
    uv: Literal["required", "preferred", "discouraged"] | None = None  # None: as the server asks
    account: str | None = None  # login: the discoverable passkey of this user name
    credential: str | None = None  # login: the passkey with this credential id (base64url)


@dataclass(frozen=True)
class Result:
    ceremony: Literal["register", "login"]
    verified: bool
    user: str | None
    method: Literal["passkey", "totp", "recovery"]
    credential_id: str | None  # base64url; None for a password + 2FA sign-in
    authenticator: str | None
    rp_id: str | None
    server: Any  # the server's verdict, as it answered

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _values(request: Request) -> dict[str, Any]:
    """The profile placeholders' values (None: the server decides)."""
    resident = request.resident
    return {
        "user": request.user,
        "name": request.name,
        "uv": request.uv,
        "resident_key": None if resident is None else ("required" if resident else "discouraged"),
        "require_resident_key": resident,
    }


class AmbiguousAccount(InvalidInput):
    """Several passkeys on the authenticator fit the login and nobody chose one."""

    def __init__(self, message: str, remedy: str, candidates: Sequence[ceremony.Account]) -> None:
        super().__init__(message, remedy)
        self.candidates = tuple(candidates)


def _listing(accounts: Sequence[ceremony.Account]) -> str:
    return "; ".join(a.label() for a in accounts)


def _picker(request: Request, rp_id: str, client: Client) -> Callable[[Sequence[ceremony.Account]], int]:
    """How a login chooses among the passkeys the authenticator offers, as a browser does: the asked-for
    one, the only account, else the person at the terminal; a script without a choice gets the list."""

    def pick(accounts: Sequence[ceremony.Account]) -> int:
        matches, wanted = list(accounts), "this login"
        if request.credential is not None:
            matches = [a for a in accounts if a.credential_id == request.credential.rstrip("=")]
            wanted = f"credential {request.credential}"
        elif request.account is not None:
            named = [a for a in accounts if a.name == request.account]
            matches = named or [a for a in accounts if a.display_name == request.account]
            wanted = f"account {request.account}"
        elif request.user is not None:
            matches = [a for a in accounts if a.name == request.user]
            wanted = request.user
        if (
            not matches
            and request.account is not None
            and not any(a.name or a.display_name for a in accounts)
        ):
            raise NoCredential(
                f"Passkey not found on this device for account {request.account} at {rp_id}: the key names"
                f" accounts only after it has verified you (it has: {_listing(accounts)})",
                "choose one with --credential ID, or add --uv required (a PIN or built-in verification)",
            )
        if not matches:
            raise NoCredential(
                f"Passkey not found on this device for {wanted} at {rp_id} (it has: {_listing(accounts)})",
                "choose one of those with --account NAME or --credential ID",
            )
        if len({a.user_id for a in matches}) == 1:  # one account (maybe several of its passkeys)
            return accounts.index(matches[0])
        chosen = client.choose(matches) if client.choose is not None else None
        if chosen is None:
            raise AmbiguousAccount(
                f"{len(matches)} passkeys for {rp_id} on this device: {_listing(matches)}",
                "choose one with --account NAME or --credential ID",
                matches,
            )
        return accounts.index(matches[chosen])

    return pick


def _begin(session: Session, step: Step, values: Mapping[str, Any]) -> Any:
    answer = session.call(
        step.method, step.path, fill(step.body, values), fill(step.query, values), step.status
    )
    return dig(answer, step.options)


def _finish(session: Session, step: Step, credential: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    body = bury(dict(credential), step.credential, fill(step.body, values))
    verdict = session.call(step.method, step.path, body, fill(step.query, values), step.status, finish=True)
    profile = session.profile
    if dig(verdict, profile.verdict) != profile.verdict_equals:
        raise VerificationFailed(
            "Verification failed (the server did not confirm the passkey)",
            "check that the authenticator is the one registered for this account",
        )
    return verdict


def _malformed(what: str, problem: str) -> ServerUnavailable:
    return ServerUnavailable(
        f"Passkey unavailable (the server's {what} are malformed: {problem})",
        "check that --profile matches this server, else report it to the site's operator",
    )


# The members of the options' JSON that WebAuthn requires (and fido2 needs), and what each must be: name ->
# (kind, required, the members of the object, or of each object in the list).
Shape = dict[str, tuple[str, bool, "Shape | None"]]
_BASE64URL = re.compile(r"[A-Za-z0-9_+/-]*={0,2}")  # padding and the standard alphabet tolerated, as fido2
_KINDS: dict[str, Callable[[Any], bool]] = {
    "an object": lambda value: isinstance(value, dict),
    "a list": lambda value: isinstance(value, list),
    "a string": lambda value: isinstance(value, str),
    "an integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "a base64url string": lambda value: isinstance(value, str) and _BASE64URL.fullmatch(value) is not None,
}
_DESCRIPTOR: Shape = {"id": ("a base64url string", True, None)}
_CREATION: Shape = {
    "rp": ("an object", True, {"name": ("a string", True, None)}),
    "user": ("an object", True, {"id": ("a base64url string", True, None)}),
    "challenge": ("a base64url string", True, None),
    "pubKeyCredParams": ("a list", True, {"alg": ("an integer", True, None)}),
    "excludeCredentials": ("a list", False, _DESCRIPTOR),
}
_REQUEST: Shape = {
    "challenge": ("a base64url string", True, None),
    "allowCredentials": ("a list", False, _DESCRIPTOR),
}


def _shape_problem(value: Mapping[str, Any], shape: Shape, where: str = "") -> str | None:
    """The first member missing or of the wrong kind, as ``user.id is not a base64url string``."""
    for name, (kind, required, members) in shape.items():
        path, member = where + name, value.get(name)
        if member is None:  # JSON null is absent, as fido2 reads it
            if required:
                return f"{path} is missing"
            continue
        if not _KINDS[kind](member):
            return f"{path} is not {kind}"
        if members is None:
            continue
        objects = {path: member} if kind == "an object" else {f"{path}[{i}]": m for i, m in enumerate(member)}
        for place, item in objects.items():
            problem = (
                _shape_problem(item, members, place + ".")
                if isinstance(item, dict)
                else f"{place} is not an object"
            )
            if problem is not None:
                return problem
    return None


def _check_shape(what: str, raw: Any, shape: Shape) -> None:
    problem = "not a JSON object" if not isinstance(raw, dict) else _shape_problem(raw, shape)
    if problem is not None:
        raise _malformed(what, problem)


def _unparsed(what: str, error: Exception) -> ServerUnavailable:
    """What fido2 could not read in options of the right shape (a timeout that is no number...)."""
    logger.debug("malformed %s: %r", what, error)
    return _malformed(what, f"{type(error).__name__}: {str(error)[:200]}".splitlines()[0])


def _check_user_handle(user_id: bytes) -> None:
    """WebAuthn requires a user handle of 1 to 64 bytes; authenticators store it with the passkey."""
    if not 1 <= len(user_id) <= 64:
        raise ServerUnavailable(
            f"Passkey unavailable (the server's registration options are invalid: user.id is"
            f" {len(user_id)} bytes long; WebAuthn requires 1 to 64 bytes)",
            "the site must give each account a user handle: report it to the site's operator",
        )


def _json(response: Mapping[str, Any]) -> dict[str, Any]:
    """fido2's response objects as plain JSON-ready dicts (WebAuthn Level 3 JSON forms)."""
    return {
        key: _json(value) if isinstance(value, Mapping) else value for key, value in dict(response).items()
    }


def register(
    session: Session, client: Client, request: Request, step_up: Callable[[], None] | None = None
) -> Result:
    """``step_up``: how to confirm the user when the server wants a fresh verification first (then the
    options are asked for again, once)."""
    steps = session.profile.register
    values = _values(request)
    try:
        raw = _begin(session, steps.begin, values)
    except StepUpRequired:
        if step_up is None:
            raise
        step_up()
        raw = _begin(session, steps.begin, values)
    _check_shape("registration options", raw, _CREATION)
    try:
        options = PublicKeyCredentialCreationOptions.from_dict(raw)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise _unparsed("registration options", error) from None
    _check_user_handle(options.user.id)
    rp_id = check_rp_id(options.rp.id, client.origin, client.insecure)
    selection = options.authenticator_selection or AuthenticatorSelectionCriteria()
    if request.resident is not None:
        wanted = ResidentKeyRequirement.REQUIRED if request.resident else ResidentKeyRequirement.DISCOURAGED
        selection = dataclasses.replace(selection, resident_key=wanted, require_resident_key=request.resident)
    if request.uv is not None:
        selection = dataclasses.replace(selection, user_verification=UserVerificationRequirement(request.uv))
    options = dataclasses.replace(
        options, rp=dataclasses.replace(options.rp, id=rp_id), authenticator_selection=selection
    )
    with closing(client.open_device()) as device:
        response = ceremony.make_credential(
            device, client.origin, options, client.interaction, client.timeout_s, client.insecure
        )
        body = _json(response)
        body["response"]["transports"] = ceremony.transports(device)
    verdict = _finish(session, steps.finish, body, values)
    return Result(
        ceremony="register",
        verified=True,
        user=options.user.name or request.user,  # the account the server registered the passkey for
        method="passkey",
        credential_id=websafe_encode(response.raw_id),
        authenticator=client.authenticator,
        rp_id=rp_id,
        server=verdict,
    )


def assertion(client: Client, raw: Any, request: Request) -> tuple[dict[str, Any], str]:
    """The authenticator's answer to request options a server gave (a login, a step-up), checked as a
    browser checks them: the response as JSON, and the rpId it is for."""
    _check_shape("login options", raw, _REQUEST)
    try:
        options = PublicKeyCredentialRequestOptions.from_dict(raw)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise _unparsed("login options", error) from None
    rp_id = check_rp_id(options.rp_id, client.origin, client.insecure)
    options = dataclasses.replace(options, rp_id=rp_id)
    if request.user is not None and options.allow_credentials == []:
        raise NoCredential(
            f"No passkeys available for {request.user}",
            "sign in with password and 2FA, then run 'keyctl register'",
        )
    if request.uv is not None:
        options = dataclasses.replace(options, user_verification=UserVerificationRequirement(request.uv))
    with closing(client.open_device()) as device:
        response = ceremony.get_assertion(
            device,
            client.origin,
            options,
            client.interaction,
            client.timeout_s,
            client.insecure,
            _picker(request, rp_id, client),
        )
    return _json(response), rp_id


def login(session: Session, client: Client, request: Request) -> Result:
    """Sign in with a passkey: the server's options, checked as a browser checks them (origin, rpId), the
    authenticator's assertion, the server's verdict. Username-first with ``request.user``, else
    username-less (the account chosen as ``request`` says when the authenticator holds several)."""
    steps = session.profile.login
    values = _values(request)
    raw = _begin(session, steps.begin, values)
    response, rp_id = assertion(client, raw, request)
    verdict = _finish(session, steps.finish, response, values)
    said = dig(verdict, session.profile.verdict_user) if session.profile.verdict_user else None
    user = request.user or (said if isinstance(said, str) else None)
    return Result(
        ceremony="login",
        verified=True,
        user=user,
        method="passkey",
        credential_id=str(response["id"]),
        authenticator=client.authenticator,
        rp_id=rp_id,
        server=verdict,
    )


def step_up(session: Session, client: Client, user: str) -> None:
    """Confirm the signed-in ``user`` with one of their passkeys, for a sensitive action the server
    refused with ``step_up_required`` (the profile's ``[signin]`` step-up endpoints)."""
    paths = session.profile.signin
    if "step_up_passkey_options" not in paths or "step_up_passkey_verify" not in paths:
        raise InvalidInput(
            f"server profile {session.profile.name} has no passkey step-up",
            "confirm with a code instead: --totp NAME or --totp-secret-env VAR",
        )
    raw = session.call("POST", paths["step_up_passkey_options"], {})
    response, _ = assertion(client, raw, Request(user=user))
    session.call("POST", paths["step_up_passkey_verify"], response, finish=True)
