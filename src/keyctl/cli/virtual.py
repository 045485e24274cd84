"""`keyctl virtual`: stored virtual FIDO2 authenticators (create, inspect, back up, serve over UDP,
attach as a USB key)."""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyctl.cli.output import JsonOption, RevealOption, Terminal, YesOption, secret_out
from keyctl.errors import InvalidInput

if TYPE_CHECKING:
    from keyctl.authenticator import AuthenticatorState

app = typer.Typer(no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Name of the virtual authenticator (used as virtual:NAME).")]


class Attestation(StrEnum):
    none = "none"
    self_ = "self"
    x5c = "x5c"


class Counter(StrEnum):
    global_ = "global"
    per_credential = "per-credential"
    zero = "zero"


class Kind(StrEnum):
    security_key = "security-key"
    synced = "synced"
    platform = "platform"


class Protocol(StrEnum):
    both = "both"
    ctap2 = "ctap2"
    u2f = "u2f"


class Presence(StrEnum):
    auto = "auto"
    deny = "deny"
    prompt = "prompt"
    timeout = "timeout"


class Uv(StrEnum):
    auto = "auto"
    deny = "deny"
    none = "none"
    fingerprint = "fingerprint"


_RP_ID = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _summary(name: str, state: AuthenticatorState) -> dict[str, Any]:
    synced = state.kind.value == Kind.synced.value  # what every credential's BE and BS flags say
    return {
        "name": name,
        "device": f"virtual:{name}",
        "kind": state.kind.value,
        "aaguid": str(uuid.UUID(bytes=state.aaguid)),
        "backup_eligible": synced,
        "backed_up": synced,
        "transports": state.kind.transports,
        "protocols": state.protocols.value,
        "attestation": state.attestation.value,
        "counter": state.counter_mode.value,
        "signature_counter": state.global_counter,
        "presence": state.presence,
        "presence_timeout_s": state.presence_timeout_s,
        "uv": state.uv,
        "pin_set": state.pin_hash is not None,
        "pin_retries": state.pin_retries,
        "min_pin_length": state.min_pin_length,
        "always_uv": state.always_uv,
        "synced_with": sorted(state.sync_bases),
        "enterprise_attestation_rp_ids": state.ep_rp_ids,
        "discoverable_credentials": [
            {"rp_id": c.rp_id, "user_name": c.user_name, "sign_count": c.sign_count}
            for c in state.credentials
        ],
    }


@app.command()
def create(
    name: NameArg,
    kind: Annotated[
        Kind,
        typer.Option(
            help="security-key (device-bound, USB), synced (a passkey provider: backed up, counter 0) or "
            "platform (device-bound, built in)."
        ),
    ] = Kind.security_key,
    aaguid: Annotated[
        str | None,
        typer.Option(
            help="AAGUID to report (default: random for a security key, Google Password Manager's for "
            "synced, Windows Hello's for platform)."
        ),
    ] = None,
    attestation: Annotated[
        Attestation, typer.Option(help="Attestation statement format.")
    ] = Attestation.none,
    pin_env: Annotated[
        str | None, typer.Option("--pin-env", metavar="VAR", help="Set a PIN, read from this env variable.")
    ] = None,
    counter: Annotated[
        Counter | None,
        typer.Option(
            help="Signature counter (default: global; zero for synced): zero lets parallel CI jobs share "
            "one credential.",
            show_default=False,
        ),
    ] = None,
    presence: Annotated[Presence, typer.Option(help="What a request for a touch gets.")] = Presence.auto,
    presence_timeout: Annotated[
        float, typer.Option(help="Seconds 'prompt' waits, and 'timeout' waits before giving up.", min=0.1)
    ] = 30.0,
    uv: Annotated[
        Uv, typer.Option(help="Built-in UV: succeeds, fails, absent, or a fingerprint sensor to enroll.")
    ] = Uv.auto,
    ep_rp_id: Annotated[
        list[str] | None,
        typer.Option(
            "--ep-rp-id",
            metavar="RP_ID",
            help="An RP ID granted vendor-facilitated enterprise attestation (repeatable; fixed for good).",
        ),
    ] = None,
    protocol: Annotated[
        Protocol | None,
        typer.Option(
            help="What it speaks over CTAPHID (default: both for a security key, else ctap2); u2f makes an "
            "old U2F-only key that clients reach through CTAP1.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="AAGUID|NAME",
            help="Be a real model: its AAGUID, name and getInfo (versions, extensions, options, algorithms, "
            "limits) from its FIDO metadata statement ('keyctl mds update'), less what keyctl lacks.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing one of that name.")] = False,
) -> None:
    """Create a stored virtual authenticator (encrypted; key in the OS keyring or $KEYCTL_VIRTUAL_KEY)."""
    import os

    from keyctl.audit import providers
    from keyctl.authenticator import AttestationMode, CounterMode, PresenceMode, UvMode, new_state, store
    from keyctl.authenticator.device import set_pin
    from keyctl.authenticator.state import Kind as AuthenticatorKind
    from keyctl.authenticator.state import Protocols

    store.check_name(name)
    profile = None
    if model is not None:
        if aaguid is not None:
            raise InvalidInput("--model sets the AAGUID", "drop --aaguid or --model")
        profile, aaguid = _model_profile(model)
    aaguid_bytes = None
    if aaguid is not None:
        try:
            aaguid_bytes = uuid.UUID(aaguid).bytes
        except ValueError:
            raise InvalidInput(f"{aaguid!r} is not an AAGUID", "give a UUID like 0bb43545-fd2c-...") from None
    ep_rp_ids = ep_rp_id or []
    for rp_id in ep_rp_ids:
        if not _RP_ID.fullmatch(rp_id):
            raise InvalidInput(
                f"--ep-rp-id {rp_id!r} is not an RP ID", "give a domain name like login.example.com"
            )
    if protocol is Protocol.u2f and pin_env is not None:
        raise InvalidInput("a U2F-only key has no PIN", "drop --pin-env, or use --protocol both")
    pin_code = None
    if pin_env is not None:
        pin_code = os.environ.get(pin_env)
        if not pin_code:
            raise InvalidInput(f"environment variable {pin_env} is not set or empty", f"export {pin_env}=...")
    try:
        state = new_state(
            aaguid=aaguid_bytes,
            attestation_mode=AttestationMode(attestation.value),
            counter_mode=None if counter is None else CounterMode(counter.value),
            presence=PresenceMode(presence.value),
            uv=UvMode(uv.value),
            presence_timeout_s=presence_timeout,
            kind=AuthenticatorKind(kind.value),
            ep_rp_ids=ep_rp_ids,
            protocols=None if protocol is None else Protocols(protocol.value),
            model=profile,
        )
    except ValueError as error:
        raise InvalidInput(f"--kind {kind.value}: {error}", "drop the conflicting option") from None
    if pin_code is not None:
        try:
            set_pin(state, pin_code)
        except ValueError as error:
            raise InvalidInput(
                f"the PIN in {pin_env} is not acceptable: {error}", "choose another PIN"
            ) from None
    store.create(name, state, force=force)
    what = ""
    if kind is not Kind.security_key:
        from keyctl.audit import mds

        named = providers.name_of(str(uuid.UUID(bytes=state.aaguid)), mds.current())
        what = f" ({kind.value}: {named.name}, named by the {named.source})" if named else f" ({kind.value})"
    if profile is not None:
        what = f" (model: {profile.name})"
        for dropped in profile.dropped:
            Terminal().warn(f"left out, {dropped}")
    Terminal().success(f"created virtual authenticator {name!r}{what}: use --device virtual:{name}")


def _model_profile(query: str) -> tuple[Any, str]:
    """(profile, AAGUID) of the model ``query`` names in the FIDO metadata."""
    from keyctl.audit import mds
    from keyctl.authenticator import model as models
    from keyctl.errors import NotFound

    blob = mds.current()
    if blob is None:
        raise NotFound("no FIDO metadata to take the model from", "run 'keyctl mds update'")
    matches = blob.models(query)
    if not matches:
        raise NotFound(
            f"no model {query!r} in the FIDO metadata ({blob.source})",
            "give its AAGUID or part of its name; 'keyctl mds update' fetches the latest metadata",
        )
    if len(matches) > 1:
        names = "; ".join(sorted(e.description for e in matches)[:5])
        raise InvalidInput(
            f"--model {query!r} names {len(matches)} models ({names}{'; ...' if len(matches) > 5 else ''})",
            "give the AAGUID or the full name",
        )
    entry = matches[0]
    if entry.get_info is None or entry.aaguid is None:
        raise InvalidInput(
            f"the metadata statement of {entry.description} has no authenticatorGetInfo (not a FIDO2 model)",
            "pick a FIDO2 model",
        )
    try:
        return models.profile(entry.description, entry.get_info), entry.aaguid
    except ValueError as error:
        raise InvalidInput(str(error), "pick another model") from None


@app.command()
def clone(
    name: NameArg,
    new_name: Annotated[str, typer.Argument(metavar="NEW", help="Name of the second device.")],
    as_json: JsonOption = False,
) -> None:
    """Make a second device of a synced authenticator's provider account (same passkeys; own PIN)."""
    from keyctl.authenticator import store
    from keyctl.authenticator.sync import SyncRefused
    from keyctl.authenticator.sync import clone as clone_state

    store.check_name(new_name)
    if new_name == name:
        raise InvalidInput("a clone needs a name of its own", f"e.g. 'keyctl virtual clone {name} {name}-2'")
    with store.FileStore(name).transaction() as state:  # the source keeps its new sync base only if ...
        try:
            twin = clone_state(name, state, new_name)
        except SyncRefused as error:
            raise InvalidInput(str(error), "register each device-bound authenticator separately") from None
        store.create(new_name, twin)  # ... the clone was stored
    term = Terminal(as_json)
    if as_json:
        term.json({"name": new_name, "device": f"virtual:{new_name}", "synced_with": name})
        return
    term.success(
        f"cloned {name!r} as {new_name!r} ({len(twin.credentials)} passkeys): use --device "
        f"virtual:{new_name}; 'keyctl virtual sync {name} {new_name}' shares passkeys made later"
    )


@app.command()
def sync(
    first: Annotated[str, typer.Argument(metavar="A", help="A synced virtual authenticator.")],
    second: Annotated[str, typer.Argument(metavar="B", help="A clone of A (or A of B).")],
    as_json: JsonOption = False,
) -> None:
    """Sync two devices of one provider account: passkeys made or deleted on either reach the other."""
    from contextlib import ExitStack

    from keyctl.authenticator import store
    from keyctl.authenticator.sync import SyncRefused
    from keyctl.authenticator.sync import sync as sync_states

    if first == second:
        raise InvalidInput("give two different authenticators", f"e.g. 'keyctl virtual sync {first} NEW'")
    stores = {n: store.FileStore(n) for n in sorted((first, second))}  # one lock order: no deadlock
    with ExitStack() as stack:
        states = {n: stack.enter_context(s.transaction()) for n, s in stores.items()}
        try:
            result = sync_states(first, states[first], second, states[second])
        except SyncRefused as error:
            raise InvalidInput(str(error), "only clones made with 'keyctl virtual clone' sync") from None
    term = Terminal(as_json)
    summary = {
        "copied": {first: result.copied_to_first, second: result.copied_to_second},
        "removed": result.removed,
        "passkeys": result.held,
    }
    if as_json:
        term.json(summary)
        return
    term.success(
        f"synced {first!r} and {second!r}: {result.copied_to_second} passkeys copied to {second}, "
        f"{result.copied_to_first} to {first}, {result.removed} deleted on both; {result.held} on each"
    )


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List stored virtual authenticators."""
    from keyctl.authenticator import store

    names = store.names()
    term = Terminal(as_json)
    if as_json:
        term.json([{"name": n, "device": f"virtual:{n}"} for n in names])
        return
    if not names:
        term.status("no virtual authenticators yet: 'keyctl virtual create NAME'")
    for n in names:
        term.line(n)


@app.command()
def info(
    name: NameArg,
    as_json: JsonOption = False,
    ca: Annotated[bool, typer.Option("--ca", help="Include the attestation CA certificate (PEM).")] = False,
) -> None:
    """Show what a virtual authenticator is configured with and holds (no secrets)."""
    from keyctl.authenticator import store
    from keyctl.authenticator.attestation import ca_certificate_pem

    file_store = store.FileStore(name)
    state = file_store.load()
    from keyctl.audit import mds
    from keyctl.audit.providers import name_of

    summary = _summary(name, state)
    named = name_of(summary["aaguid"], mds.current())
    summary["model"] = named.name if named else None
    summary["model_source"] = named.source if named else None
    if state.model is not None:  # what of the real model's getInfo it reports, and what keyctl left out
        summary["model_kept"] = state.model.kept
        summary["model_dropped"] = state.model.dropped
    summary["state_key"] = file_store.key_source
    if as_json or ca:
        summary["attestation_ca_pem"] = ca_certificate_pem(state)
    term = Terminal(as_json)
    if as_json:
        term.json(summary)
        return
    rows = [(k, v) for k, v in summary.items() if k not in ("discoverable_credentials", "attestation_ca_pem")]
    rows.append(("discoverable_credentials", len(state.credentials)))
    term.table(["property", "value"], rows)
    if state.credentials:
        term.table(
            ["rp_id", "user", "sign_count"], [(c.rp_id, c.user_name, c.sign_count) for c in state.credentials]
        )
    if ca:
        term.line(summary["attestation_ca_pem"].rstrip("\n"))


@app.command("export-ca")
def export_ca(name: NameArg) -> None:
    """Print the attestation CA certificate (PEM) to trust for 'x5c' attestation."""
    from keyctl.authenticator import store
    from keyctl.authenticator.attestation import ca_certificate_pem

    Terminal().line(ca_certificate_pem(store.FileStore(name).load()).rstrip("\n"))


@app.command("delete")
@app.command("remove", hidden=True)  # the old verb, kept for scripts
def delete(name: NameArg, yes: YesOption = False) -> None:
    """Delete a virtual authenticator and its keyring secret (its passkeys stop working)."""
    from keyctl.authenticator import store

    store.require(name)  # NotFound before asking anything
    Terminal().confirm(f"Delete virtual authenticator {name!r} and every passkey on it?", yes)
    store.remove(name)
    Terminal().success(f"deleted virtual authenticator {name!r}")


@app.command()
def export(name: NameArg, reveal: RevealOption = False) -> None:
    """Print the whole authenticator as one line, e.g. for a CI secret (it IS a secret)."""
    from keyctl.authenticator import store

    secret_out(store.export_blob(name), reveal, "an authenticator export (it holds private keys)")


@app.command("import")
def import_(
    name: Annotated[str | None, typer.Argument(help="Store it under this name (default: its own).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing one of that name.")] = False,
) -> None:
    """Read an export from stdin and store it (encrypted with this machine's key)."""
    from keyctl.authenticator import store

    if sys.stdin.isatty():
        Terminal().status("paste the export line, then press Enter:")
    stored = store.import_blob(sys.stdin.readline(), name, force=force)
    Terminal().success(f"imported virtual authenticator {stored!r}: use --device virtual:{stored}")


@app.command("ci-key")
def ci_key(reveal: RevealOption = False) -> None:
    """Print a fresh value for $KEYCTL_VIRTUAL_KEY (CI mode: no OS keyring needed)."""
    from keyctl.authenticator import store

    secret_out(store.new_ci_key(), reveal, "a key")


@app.command()
def serve(
    name: NameArg,
    udp: Annotated[
        str, typer.Option("--udp", metavar="HOST:PORT", help="Where to listen.")
    ] = "127.0.0.1:8111",
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow binding a non-loopback address.")
    ] = False,
    reset_window: Annotated[
        str,
        typer.Option(
            "--reset-window",
            metavar="SECONDS|always",
            help="How long after power-up authenticatorReset is allowed (real keys: 10).",
        ),
    ] = "10",
) -> None:
    """Serve a virtual authenticator as a CTAPHID-over-UDP simulator until Ctrl-C.

    SIGUSR1 or 'keyctl virtual power-cycle NAME' power-cycles it, as re-plugging a key does.
    """
    import signal

    from keyctl.authenticator import VirtualAuthenticator, store
    from keyctl.hid.control import serving
    from keyctl.hid.prompt import terminal_prompter
    from keyctl.hid.spec import parse_host_port
    from keyctl.hid.udp import UdpServer

    host, port = parse_host_port(udp, "--udp")
    window = _reset_window(reset_window)
    store.require(name)
    authenticator = VirtualAuthenticator(
        store.FileStore(name), prompter=terminal_prompter, reset_window_s=window
    )
    server = UdpServer(authenticator, host, port, allow_remote=allow_remote)
    bound_host, bound_port = server.address
    terminal = Terminal()

    def power_cycle(signum: int, frame: object) -> None:
        authenticator.power_cycle()
        terminal.status(f"virtual:{name} power-cycled")

    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, power_cycle)
    terminal.status(f"serving virtual:{name} on udp:{bound_host}:{bound_port} (Ctrl-C stops)")
    try:
        with serving(name):
            server.serve_forever()
    except KeyboardInterrupt:
        terminal.status("stopped")
    finally:
        server.stop()


def _reset_window(value: str) -> float | None:
    if value == "always":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise InvalidInput(
            f"--reset-window {value!r} is not a number of seconds", "give e.g. 10, 0.5 or 'always'"
        )
    return seconds


@app.command("power-cycle")
def power_cycle(name: NameArg) -> None:
    """Power-cycle a running 'keyctl virtual serve NAME' or 'attach NAME' (ends PIN_AUTH_BLOCKED, opens the
    reset window)."""
    from keyctl.hid.control import power_cycle as cycle

    pids = cycle(name)
    Terminal().success(f"power-cycled virtual:{name} (served by pid {', '.join(map(str, pids))})")


def _usb_id(text: str, what: str) -> int:
    from keyctl.hid.uhid import check_id

    try:
        value = int(text, 0)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a number", f"give a 16-bit {what}, e.g. 0x1209") from None
    return check_id(value, what)


@app.command()
def attach(
    name: NameArg,
    vendor_id: Annotated[
        str, typer.Option("--vendor-id", metavar="ID", help="USB vendor id to report (hex or decimal).")
    ] = "0x1209",
    product_id: Annotated[
        str, typer.Option("--product-id", metavar="ID", help="USB product id to report (hex or decimal).")
    ] = "0x4b43",
    uhid_path: Annotated[str, typer.Option(hidden=True)] = "/dev/uhid",
) -> None:
    """Attach a virtual authenticator as a USB security key (Linux /dev/uhid) until Ctrl-C or SIGTERM."""
    import os
    import signal

    from keyctl.authenticator import VirtualAuthenticator, store
    from keyctl.hid.control import serving
    from keyctl.hid.prompt import terminal_prompter
    from keyctl.hid.uhid import UhidDevice, open_uhid

    vendor = _usb_id(vendor_id, "vendor id")
    product = _usb_id(product_id, "product id")
    fd = open_uhid(uhid_path)
    try:
        file_store = store.FileStore(name)
        file_store.load()  # a missing authenticator or a wrong key fails here, before any device appears
    except BaseException:
        os.close(fd)
        raise
    authenticator = VirtualAuthenticator(file_store, prompter=terminal_prompter)
    terminal = Terminal()

    def power_cycle(signum: int, frame: object) -> None:
        authenticator.power_cycle()
        terminal.status(f"virtual:{name} power-cycled")

    with UhidDevice(fd, authenticator, name, vendor, product) as device, serving(name):
        signal.signal(signal.SIGTERM, lambda *_: device.stop())
        signal.signal(signal.SIGUSR1, power_cycle)  # 'keyctl virtual power-cycle NAME', as for serve
        terminal.status(
            f"attached virtual:{name} as USB security key {vendor:04x}:{product:04x} (Ctrl-C detaches)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            device.serve_forever()
    terminal.status("detached")
