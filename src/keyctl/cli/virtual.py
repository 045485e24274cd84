"""`keyctl virtual`: stored virtual FIDO2 authenticators (create, inspect, back up, serve over UDP,
attach as a USB key)."""

from __future__ import annotations

import contextlib
import sys
import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyctl.cli.output import JsonOption, Terminal, YesOption
from keyctl.errors import InvalidInput

if TYPE_CHECKING:
    from keyctl.authenticator import AuthenticatorState

app = typer.Typer(no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Name of the virtual authenticator (used as virtual:NAME).")]
RevealOption = Annotated[
    bool, typer.Option("--reveal", help="Print the secret even though stdout is a terminal.")
]


class Attestation(StrEnum):
    none = "none"
    self_ = "self"
    x5c = "x5c"


class Counter(StrEnum):
    global_ = "global"
    per_credential = "per-credential"
    zero = "zero"


class Presence(StrEnum):
    auto = "auto"
    deny = "deny"
    prompt = "prompt"
    timeout = "timeout"


class Uv(StrEnum):
    auto = "auto"
    deny = "deny"
    none = "none"


def _secret_out(value: str, reveal: bool, what: str) -> None:
    """Secrets go to a pipe or file; to a terminal only when asked for explicitly."""
    if sys.stdout.isatty() and not reveal:
        raise InvalidInput(
            f"refusing to print {what} on a terminal",
            "redirect stdout to a file or a CI secret store, or pass --reveal",
        )
    sys.stdout.write(value + "\n")
    sys.stdout.flush()


def _summary(name: str, state: AuthenticatorState) -> dict[str, Any]:
    return {
        "name": name,
        "device": f"virtual:{name}",
        "aaguid": str(uuid.UUID(bytes=state.aaguid)),
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
        "discoverable_credentials": [
            {"rp_id": c.rp_id, "user_name": c.user_name, "sign_count": c.sign_count}
            for c in state.credentials
        ],
    }


@app.command()
def create(
    name: NameArg,
    aaguid: Annotated[str | None, typer.Option(help="AAGUID to report (default: a random one).")] = None,
    attestation: Annotated[
        Attestation, typer.Option(help="Attestation statement format.")
    ] = Attestation.none,
    pin_env: Annotated[
        str | None, typer.Option("--pin-env", metavar="VAR", help="Set a PIN, read from this env variable.")
    ] = None,
    counter: Annotated[
        Counter, typer.Option(help="Signature counter: zero lets parallel CI jobs share one credential.")
    ] = Counter.global_,
    presence: Annotated[Presence, typer.Option(help="What a request for a touch gets.")] = Presence.auto,
    presence_timeout: Annotated[
        float, typer.Option(help="Seconds 'prompt' waits, and 'timeout' waits before giving up.", min=0.1)
    ] = 30.0,
    uv: Annotated[Uv, typer.Option(help="Built-in user verification: succeeds, fails, or absent.")] = Uv.auto,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing one of that name.")] = False,
) -> None:
    """Create a stored virtual authenticator (encrypted; key in the OS keyring or $KEYCTL_VIRTUAL_KEY)."""
    import os

    from keyctl.authenticator import AttestationMode, CounterMode, PresenceMode, UvMode, new_state, store
    from keyctl.authenticator.device import set_pin

    store.check_name(name)
    aaguid_bytes = None
    if aaguid is not None:
        try:
            aaguid_bytes = uuid.UUID(aaguid).bytes
        except ValueError:
            raise InvalidInput(f"{aaguid!r} is not an AAGUID", "give a UUID like 0bb43545-fd2c-...") from None
    pin_code = None
    if pin_env is not None:
        pin_code = os.environ.get(pin_env)
        if not pin_code:
            raise InvalidInput(f"environment variable {pin_env} is not set or empty", f"export {pin_env}=...")
    state = new_state(
        aaguid=aaguid_bytes,
        attestation_mode=AttestationMode(attestation.value),
        counter_mode=CounterMode(counter.value),
        presence=PresenceMode(presence.value),
        uv=UvMode(uv.value),
        presence_timeout_s=presence_timeout,
    )
    if pin_code is not None:
        try:
            set_pin(state, pin_code)
        except ValueError as error:
            raise InvalidInput(
                f"the PIN in {pin_env} is not acceptable: {error}", "choose another PIN"
            ) from None
    store.create(name, state, force=force)
    Terminal().success(f"created virtual authenticator {name!r}: use --device virtual:{name}")


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

    summary = _summary(name, state)
    metadata = mds.current()
    summary["model"] = metadata.model_name(summary["aaguid"]) if metadata else None
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


@app.command()
def remove(name: NameArg, yes: YesOption = False) -> None:
    """Delete a virtual authenticator and its keyring secret (its passkeys stop working)."""
    from keyctl.authenticator import store

    store.require(name)  # NotFound before asking anything
    Terminal().confirm(f"Delete virtual authenticator {name!r} and every passkey on it?", yes)
    store.remove(name)
    Terminal().success(f"removed virtual authenticator {name!r}")


@app.command()
def export(name: NameArg, reveal: RevealOption = False) -> None:
    """Print the whole authenticator as one line, e.g. for a CI secret (it IS a secret)."""
    from keyctl.authenticator import store

    _secret_out(store.export_blob(name), reveal, "an authenticator export (it holds private keys)")


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

    _secret_out(store.new_ci_key(), reveal, "a key")


@app.command()
def serve(
    name: NameArg,
    udp: Annotated[
        str, typer.Option("--udp", metavar="HOST:PORT", help="Where to listen.")
    ] = "127.0.0.1:8111",
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow binding a non-loopback address.")
    ] = False,
) -> None:
    """Serve a virtual authenticator as a CTAPHID-over-UDP simulator until Ctrl-C."""
    from keyctl.authenticator import VirtualAuthenticator, store
    from keyctl.hid.prompt import terminal_prompter
    from keyctl.hid.spec import parse_host_port
    from keyctl.hid.udp import UdpServer

    host, port = parse_host_port(udp, "--udp")
    authenticator = VirtualAuthenticator(store.FileStore(name), prompter=terminal_prompter)
    server = UdpServer(authenticator, host, port, allow_remote=allow_remote)
    bound_host, bound_port = server.address
    Terminal().status(f"serving virtual:{name} on udp:{bound_host}:{bound_port} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        Terminal().status("stopped")
    finally:
        server.stop()


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
    with UhidDevice(fd, authenticator, name, vendor, product) as device:
        signal.signal(signal.SIGTERM, lambda *_: device.stop())
        Terminal().status(
            f"attached virtual:{name} as USB security key {vendor:04x}:{product:04x} (Ctrl-C detaches)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            device.serve_forever()
    Terminal().status("detached")
