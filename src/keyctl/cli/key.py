"""`keyctl key`: manage a security key (USB, UDP simulator or virtual) over CTAP2."""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from keyctl.cli.output import DeviceOption, DevicesOption, JsonOption, Terminal, YesOption
from keyctl.cli.prompt import read_secret

if TYPE_CHECKING:
    from keyctl.device.key import SecurityKey

app = typer.Typer(no_args_is_help=True)
pin_app = typer.Typer(no_args_is_help=True, help="Set, change, verify the PIN; show retries.")
config_app = typer.Typer(no_args_is_help=True, help="Key settings: minimum PIN length, alwaysUv, ...")
creds_app = typer.Typer(no_args_is_help=True, help="Discoverable credentials stored on the key.")
fingerprints_app = typer.Typer(no_args_is_help=True, help="Fingerprints enrolled on a biometric key.")
app.add_typer(pin_app, name="pin")
app.add_typer(config_app, name="config")
app.add_typer(creds_app, name="creds")
app.add_typer(fingerprints_app, name="fingerprints")

PinEnvOption = Annotated[
    str | None, typer.Option("--pin-env", metavar="VAR", help="Read the PIN from this environment variable.")
]


def _open(spec: str) -> SecurityKey:
    from keyctl.device.key import SecurityKey
    from keyctl.hid import open_device

    return SecurityKey(open_device(spec))


def _pin(env_var: str | None) -> str:
    return read_secret("PIN", env_var)


@app.command("list")
def list_keys(
    device: DevicesOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the authenticators keyctl can reach: USB keys and virtual ones (or just the -d ones)."""
    from keyctl.audit import mds
    from keyctl.device.inventory import list_keys as inventory

    metadata = mds.current()
    keys = inventory(device or None, metadata.model_name if metadata else lambda aaguid: None)
    term = Terminal(as_json)
    if as_json:
        term.json([asdict(k) for k in keys])
        return
    if not keys:
        term.status("No authenticators found. Insert a key, or create one: keyctl virtual create NAME")
        return
    term.table(
        ["device", "kind", "product", "serial", "AAGUID", "model", "problem"],
        [
            (
                k.spec,
                k.kind,
                k.product_name or "-",
                k.serial or "-",
                k.aaguid or "-",
                k.model or "-",
                k.problem or "",
            )
            for k in keys
        ],
    )


@app.command()
def info(device: DeviceOption = "usb", as_json: JsonOption = False) -> None:
    """Versions, options, algorithms, PIN state and capacity of the key."""
    from keyctl.audit import mds

    details = _open(device).info()
    metadata = mds.current()
    model = metadata.model_name(details.aaguid) if metadata else None
    term = Terminal(as_json)
    if as_json:
        term.json({**asdict(details), "model": model})
        return
    options = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in sorted(details.options.items()))
    rows: list[tuple[str, object]] = [
        ("device", device),
        ("aaguid", details.aaguid),
        ("model", model or "unknown to the FIDO metadata"),
        ("versions", ", ".join(details.versions)),
        ("extensions", ", ".join(details.extensions) or "none"),
        ("options", options),
        ("algorithms", ", ".join(details.algorithms)),
        ("PIN", f"set, {details.pin_retries} retries left" if details.pin_set else "not set"),
        ("UV retries", details.uv_retries if details.uv_retries is not None else "-"),
        ("min PIN length", details.min_pin_length),
        ("force PIN change", "yes" if details.force_pin_change else "no"),
        ("discoverable slots left", details.remaining_discoverable_credentials),
        ("firmware", details.firmware_version),
        ("max message size", details.max_msg_size),
        ("transports", ", ".join(details.transports) or "-"),
        ("PIN/UV protocols", ", ".join(map(str, details.pin_uv_protocols))),
    ]
    term.table(["property", "value"], rows)


@pin_app.command("set")
def pin_set(
    device: DeviceOption = "usb",
    pin_env: Annotated[
        str | None, typer.Option("--pin-env", metavar="VAR", help="Read the new PIN from this variable.")
    ] = None,
) -> None:
    """Set a PIN on a key that has none (asked twice on a terminal)."""
    key = _open(device)
    new_pin = read_secret("new PIN", pin_env, confirm=True)
    key.set_pin(new_pin)
    Terminal().success("PIN set.")


@pin_app.command("change")
def pin_change(
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
    new_pin_env: Annotated[
        str | None, typer.Option("--new-pin-env", metavar="VAR", help="Read the new PIN from this variable.")
    ] = None,
) -> None:
    """Change the PIN (current PIN first, then the new one)."""
    key = _open(device)
    old_pin = _pin(pin_env)
    new_pin = read_secret("new PIN", new_pin_env, confirm=True)
    key.change_pin(old_pin, new_pin)
    Terminal().success("PIN changed.")


@pin_app.command("verify")
def pin_verify(device: DeviceOption = "usb", pin_env: PinEnvOption = None) -> None:
    """Check a PIN against the key (a wrong one uses up an attempt)."""
    key = _open(device)
    key.verify_pin(_pin(pin_env))
    Terminal().success("PIN correct.")


@pin_app.command("retries")
def pin_retries(device: DeviceOption = "usb", as_json: JsonOption = False) -> None:
    """PIN attempts left before the PIN blocks."""
    retries, power_cycle = _open(device).pin_retries()
    term = Terminal(as_json)
    if as_json:
        term.json({"pin_retries": retries, "reinsert_needed": power_cycle})
        return
    term.line(
        f"{retries} PIN attempts left" + (" (re-insert the key before the next one)" if power_cycle else "")
    )


@config_app.command("min-pin-length")
def config_min_pin_length(
    length: Annotated[int, typer.Argument(help="The new minimum PIN length (it can only grow).")],
    rp: Annotated[
        list[str] | None, typer.Option("--rp", help="An RP allowed to read the minimum (repeatable).")
    ] = None,
    force_change: Annotated[bool, typer.Option("--force-change", help="Also require a new PIN.")] = False,
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
) -> None:
    """Raise the key's minimum PIN length."""
    key = _open(device)
    key.set_min_pin_length(_pin(pin_env), length, rp or [], force_change)
    Terminal().success(f"minimum PIN length is now {length}.")


@config_app.command("force-change")
def config_force_change(device: DeviceOption = "usb", pin_env: PinEnvOption = None) -> None:
    """Require the PIN to be changed before the key is used again."""
    key = _open(device)
    key.set_min_pin_length(_pin(pin_env), None, [], force_change=True)
    Terminal().success("the PIN must now be changed before next use.")


@config_app.command("always-uv")
def config_always_uv(
    state: Annotated[str, typer.Argument(help="on or off", metavar="on|off")],
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
) -> None:
    """Require user verification (PIN or biometrics) for every use."""
    from keyctl.errors import InvalidInput

    if state not in ("on", "off"):
        raise InvalidInput(f"always-uv takes on or off, not {state!r}", "keyctl key config always-uv on")
    key = _open(device)
    changed = key.set_always_uv(_pin(pin_env), state == "on")
    Terminal().success(f"alwaysUv is {state}" + ("." if changed else " (it already was)."))


@config_app.command("enterprise-attestation")
def config_enterprise_attestation(
    action: Annotated[str, typer.Argument(metavar="enable")],
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
) -> None:
    """Enable enterprise attestation (cannot be disabled without a reset)."""
    from keyctl.errors import InvalidInput

    if action != "enable":
        raise InvalidInput(f"enterprise-attestation takes 'enable', not {action!r}", "")
    key = _open(device)
    key.enable_enterprise_attestation(_pin(pin_env))
    Terminal().success("enterprise attestation enabled.")


@creds_app.command("list")
def creds_list(
    rp: Annotated[str | None, typer.Option("--rp", help="Only this relying party.")] = None,
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Discoverable credentials on the key (needs the PIN)."""
    key = _open(device)
    found = key.credentials(_pin(pin_env), rp)
    term = Terminal(as_json)
    if as_json:
        term.json([asdict(c) for c in found])
        return
    if not found:
        term.status("No discoverable credentials on this key.")
        return
    term.table(
        ["RP", "user", "display name", "user handle", "credential id", "credProtect", "largeBlob"],
        [
            (
                c.rp_id,
                c.user_name,
                c.display_name,
                c.user_id,
                c.credential_id,
                c.cred_protect or "-",
                "yes" if c.large_blob_key else "no",
            )
            for c in found
        ],
    )


@creds_app.command("delete")
def creds_delete(
    credential_id: Annotated[str, typer.Argument(help="base64url id, from 'keyctl key creds list'.")],
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
    yes: YesOption = False,
) -> None:
    """Delete one discoverable credential."""
    key = _open(device)
    pin = _pin(pin_env)
    term = Terminal()
    term.confirm(f"Delete credential {credential_id} from the key on {device}?", yes)
    deleted = key.delete_credential(pin, credential_id)
    term.success(f"deleted the credential of {deleted.user_name} for {deleted.rp_id}.")


@creds_app.command("update-user")
def creds_update_user(
    credential_id: Annotated[str, typer.Argument(help="base64url id, from 'keyctl key creds list'.")],
    name: Annotated[str | None, typer.Option("--name", help="New user name.")] = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="New display name.")] = None,
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
) -> None:
    """Change the user name or display name stored with a credential."""
    from keyctl.errors import InvalidInput

    if name is None and display_name is None:
        raise InvalidInput("nothing to update", "give --name and/or --display-name")
    key = _open(device)
    key.update_user(_pin(pin_env), credential_id, name, display_name)
    Terminal().success("user information updated.")


@fingerprints_app.command("list")
def fingerprints_list(
    device: DeviceOption = "usb", pin_env: PinEnvOption = None, as_json: JsonOption = False
) -> None:
    """Enrolled fingerprints (needs the PIN)."""
    key = _open(device)
    found = key.fingerprints(_pin(pin_env))
    term = Terminal(as_json)
    if as_json:
        term.json([asdict(f) for f in found])
        return
    if not found:
        term.status("No fingerprints enrolled on this key.")
        return
    term.table(["template id", "name"], [(f.template_id, f.name or "-") for f in found])


@fingerprints_app.command("add")
def fingerprints_add(
    name: Annotated[
        str | None, typer.Option("--name", help="A name for the finger, e.g. 'left thumb'.")
    ] = None,
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enroll a finger: touch the sensor repeatedly until the key has enough good samples."""
    from keyctl.errors import Canceled

    key = _open(device)
    pin = _pin(pin_env)
    term = Terminal(as_json)
    term.status("Touch the key's fingerprint sensor with the same finger, lifting it between samples.")
    good = 0
    template_id = ""
    try:
        with closing(key.add_fingerprint(pin, name)) as samples:  # leaving early cancels on the key
            for sample in samples:
                template_id = sample.template_id
                good += sample.good
                if sample.good:
                    total = max(sample.required, good + sample.remaining)
                    term.status(f"sample {good}/{total} good, {sample.remaining} left")
                else:
                    term.status(f"sample {good + 1}: {sample.status}, try again")
    except KeyboardInterrupt:
        raise Canceled("fingerprint enrollment canceled, nothing was enrolled") from None
    if as_json:
        term.json({"template_id": template_id, "name": name})
        return
    term.success(f"fingerprint {template_id}" + (f" ({name})" if name else "") + " enrolled.")


@fingerprints_app.command("rename")
def fingerprints_rename(
    template_id: Annotated[str, typer.Argument(help="hex id, from 'keyctl key fingerprints list'.")],
    name: Annotated[str, typer.Argument(help="The new name.")],
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
) -> None:
    """Give an enrolled fingerprint a new name."""
    key = _open(device)
    renamed = key.rename_fingerprint(_pin(pin_env), template_id, name)
    Terminal().success(f"fingerprint {renamed.template_id} is now named {renamed.name}.")


@fingerprints_app.command("delete")
def fingerprints_delete(
    template_id: Annotated[str, typer.Argument(help="hex id, from 'keyctl key fingerprints list'.")],
    device: DeviceOption = "usb",
    pin_env: PinEnvOption = None,
    yes: YesOption = False,
) -> None:
    """Remove an enrolled fingerprint."""
    key = _open(device)
    pin = _pin(pin_env)
    term = Terminal()
    term.confirm(f"Delete fingerprint {template_id} from the key on {device}?", yes)
    deleted = key.delete_fingerprint(pin, template_id)
    term.success(
        f"deleted fingerprint {deleted.template_id}" + (f" ({deleted.name})." if deleted.name else ".")
    )


@app.command()
def reset(device: DeviceOption = "usb", yes: YesOption = False) -> None:
    """Factory-reset the key: deletes every credential and the PIN."""
    key = _open(device)
    term = Terminal()
    term.status(
        "A reset deletes every passkey and the PIN on the key. Keys accept it only within a few seconds "
        "of being plugged in, and only with a touch."
    )
    term.confirm(f"Reset the key on {device}? This cannot be undone", yes)
    key.reset(lambda: term.status("Touch the key now to confirm the reset..."))
    term.success("key reset.")


@app.command()
def wink(device: DeviceOption = "usb") -> None:
    """Make the key blink, to find it among several."""
    _open(device).wink()
    Terminal().success("winked.")
