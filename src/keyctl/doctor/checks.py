"""The checks behind `keyctl doctor`: each says what it found and, when something is wrong, how to fix it."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib.metadata import PackageNotFoundError, version

from keyctl.doctor.hidraw import FIDO_VENDORS, HidrawNode, UsbDevice, keys_without_fido_interface
from keyctl.doctor.udev import INSTALL
from keyctl.errors import ExitCode, KeyctlError

UDEV_FIX = f"install the udev rules: {INSTALL}"


class Status(IntEnum):
    OK = 0
    INFO = 1
    WARN = 2
    FAIL = 3


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    blocks: ExitCode | None = None  # set on FAIL: the exit code keyctl doctor ends with


def environment() -> list[Check]:
    python = ".".join(map(str, sys.version_info[:3]))
    checks = [
        Check(
            "python",
            Status.OK if sys.version_info >= (3, 11) else Status.FAIL,
            f"Python {python}",
            "" if sys.version_info >= (3, 11) else "install Python 3.11 or newer",
            None if sys.version_info >= (3, 11) else ExitCode.NOT_SUPPORTED,
        ),
    ]
    try:
        fido2_version = version("fido2")
    except PackageNotFoundError:
        checks.append(
            Check(
                "fido2",
                Status.FAIL,
                "python-fido2 is not installed",
                "pip install 'fido2>=2.2'",
                ExitCode.NOT_SUPPORTED,
            )
        )
        return checks
    major = int(fido2_version.split(".")[0])
    checks.append(
        Check(
            "fido2",
            Status.OK if major >= 2 else Status.FAIL,
            f"python-fido2 {fido2_version}",
            "" if major >= 2 else "pip install 'fido2>=2.2'",
            None if major >= 2 else ExitCode.NOT_SUPPORTED,
        )
    )
    return checks


def security_keys(nodes: Sequence[HidrawNode], usb_devices: Sequence[UsbDevice] | None) -> list[Check]:
    fido = [n for n in nodes if n.is_fido]
    checks: list[Check] = []
    for node in fido:
        ids = f"{node.vendor_id:04x}:{node.product_id:04x}"
        label = f"{node.product_name or 'FIDO key'} ({ids}) at {node.dev_path}"
        if node.accessible:
            checks.append(Check("security key", Status.OK, label))
        else:
            checks.append(
                Check(
                    "security key",
                    Status.FAIL,
                    f"{label}: present but this user may not open it",
                    UDEV_FIX,
                    ExitCode.NO_DEVICE,
                )
            )
    if not fido:
        checks.append(
            Check(
                "security key",
                Status.WARN,
                "no FIDO security key is plugged in",
                "insert a key; virtual authenticators (keyctl virtual) work without one",
            )
        )
    if usb_devices is None:
        checks.append(
            Check(
                "usb",
                Status.INFO,
                "pyusb found no libusb backend: cannot look for keys with FIDO off",
                "sudo apt-get install libusb-1.0-0 (optional)",
            )
        )
        return checks
    for device in keys_without_fido_interface(usb_devices, nodes):
        vendor = FIDO_VENDORS.get(device.vendor_id, "FIDO vendor")
        checks.append(
            Check(
                "usb",
                Status.WARN,
                f"{vendor} device {device.vendor_id:04x}:{device.product_id:04x} {device.product_name} "
                "shows no FIDO interface",
                "FIDO may be disabled on the key, or the key is in another mode: enable FIDO2/U2F with "
                "the vendor's tool (e.g. ykman config usb --enable FIDO2)",
            )
        )
    return checks


def secret_store() -> Check:
    """A round trip through the OS keyring on a throwaway entry, removed afterwards."""
    from keyctl import secrets

    ci_mode = [f"${name}" for name in ("KEYCTL_TOTP_KEY", "KEYCTL_VIRTUAL_KEY") if os.environ.get(name)]
    account = f"keyctl-doctor-{uuid.uuid4().hex}"
    probe = uuid.uuid4().hex
    try:
        secrets.set_secret(account, probe)
        try:
            read_back = secrets.get_secret(account)
        finally:
            secrets.delete_secret(account)
    except KeyctlError as error:
        if ci_mode:  # the secrets keyctl keeps live in encrypted files keyed from the environment
            return Check("keyring", Status.INFO, f"not used in CI mode ({', '.join(ci_mode)} set)")
        return Check("keyring", Status.FAIL, error.message, error.remedy, ExitCode.SECRET_STORE)
    if read_back != probe:
        return Check(
            "keyring",
            Status.FAIL,
            "the keyring returned a different value than was stored",
            "check the keyring backend (keyring --list-backends)",
            ExitCode.SECRET_STORE,
        )
    return Check("keyring", Status.OK, "stored, read back and deleted a throwaway secret")


def totp_file_vault() -> list[Check]:
    """CI mode of the TOTP vault: the encrypted file opens with $KEYCTL_TOTP_KEY (nothing when unset)."""
    from keyctl.totp import filevault

    try:
        key = filevault.env_key()
        if key is None:
            return []
        count = filevault.FileSecrets(key).check()
    except KeyctlError as error:
        return [Check("totp file vault", Status.FAIL, error.message, error.remedy, error.exit_code)]
    return [Check("totp file vault", Status.OK, f"{filevault.path()} opens ({count} secrets)")]


def platform_authenticator() -> Check:
    from keyctl.platform import ALTERNATIVES, status

    found = status()
    if found.available:
        return Check("platform authenticator", Status.OK, found.detail)
    return Check("platform authenticator", Status.INFO, found.detail, ALTERNATIVES)


def simulators(specs: Sequence[str]) -> list[Check]:
    """Ask each UDP simulator for its getInfo."""
    from fido2.ctap2.base import Ctap2

    from keyctl.audit import mds
    from keyctl.hid import open_device

    metadata = mds.current() if specs else None
    checks: list[Check] = []
    for spec in specs:
        try:
            info = Ctap2(open_device(spec)).get_info()
        except KeyctlError as error:
            checks.append(
                Check(f"simulator {spec}", Status.FAIL, error.message, error.remedy, ExitCode.NO_DEVICE)
            )
        except OSError as error:
            checks.append(
                Check(
                    f"simulator {spec}",
                    Status.FAIL,
                    f"no answer ({error})",
                    f"start it: keyctl virtual serve NAME --udp {spec.removeprefix('udp:')}",
                    ExitCode.NO_DEVICE,
                )
            )
        else:
            model = metadata.model_name(str(info.aaguid)) if metadata else None
            shown = f"AAGUID {info.aaguid}" + (f" ({model})" if model else "")
            checks.append(Check(f"simulator {spec}", Status.OK, f"answers; {shown}"))
    return checks


def virtual_attach(uhid_path: str) -> Check:
    """Whether `keyctl virtual attach` can create a USB security key here; optional, so never a failure."""
    from keyctl.hid.uhid import availability

    found = availability(uhid_path)
    return Check("virtual attach", Status.OK if found.possible else Status.INFO, found.detail, found.remedy)


def exit_code(checks: Sequence[Check]) -> ExitCode:
    """The code of the first failing check, or OK."""
    return next((c.blocks for c in checks if c.status is Status.FAIL and c.blocks), ExitCode.OK)
