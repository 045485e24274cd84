"""The authenticator side of a ceremony, through fido2's ``Fido2Client`` exactly as for a real key.

The options reaching this module have passed the origin/rpId check already (``origin.check_rp_id``);
the client data collector checks again with the same rule, so no path reaches the authenticator
without it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction, WebAuthnClient
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.base import AssertionResponse, Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.rpid import verify_rp_id
from fido2.utils import websafe_encode
from fido2.webauthn import (
    AuthenticationExtensionsClientOutputs,
    AuthenticationResponse,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
    RegistrationResponse,
    ResidentKeyRequirement,
)

from keyctl.errors import NoCredential, NoDevice, NotSupported
from keyctl.fido2_fixes import keep_empty_values
from keyctl.fido2_speedups import cache_fido2_class_lookups
from keyctl.platform.device import PlatformDevice
from keyctl.webauthn import appid, errors
from keyctl.webauthn.origin import rp_id_fits_host

logger = logging.getLogger(__name__)


cache_fido2_class_lookups()
keep_empty_values()  # every route below (USB, virtual, UDP, platform) builds its requests through fido2

PLATFORM = "platform"
USB = "usb"
T = TypeVar("T")


class Interaction(Protocol):
    """What the terminal does while the authenticator works (the CLI implements it)."""

    def touch(self) -> None:
        """The authenticator waits for a touch."""

    def pin(self) -> str | None:
        """The authenticator needs its PIN: the PIN, or None to cancel."""


class _Bridge(UserInteraction):
    def __init__(self, interaction: Interaction) -> None:
        self.interaction = interaction

    def prompt_up(self) -> None:
        self.interaction.touch()

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        return self.interaction.pin()

    def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
        return True


def open_authenticator(spec: str) -> CtapDevice:
    """The device for ``--authenticator``: usb[:PATH], virtual:NAME, udp:HOST:PORT or platform.

    Plain ``usb`` goes through the OS where raw HID is closed to the user (Windows without administrator
    rights); ``usb:PATH`` always means raw HID."""
    from keyctl import platform

    if spec == PLATFORM:
        return platform.authenticator()
    if spec == USB:
        routed = platform.usb_route()
        if routed is not None:
            logger.info("USB security keys go through Windows (webauthn.dll): raw HID needs admin rights")
            return routed
    from keyctl.hid import open_device

    try:
        device: CtapDevice = open_device(spec)
    except OSError as error:
        raise NoDevice(
            f"No compatible device found ({spec}: {error.strerror or type(error).__name__})",
            "insert the key; on Linux, for hidraw access: sudo keyctl doctor --install-udev-rules",
        ) from None
    return device


def _client(
    device: CtapDevice, origin: str, insecure: bool, interaction: Interaction, app_id: str | None = None
) -> WebAuthnClient:
    verify: Callable[[str, str], bool] = rp_id_fits_host if insecure else verify_rp_id
    if app_id is not None:
        verify = appid.accepting(verify, app_id)
    collector = DefaultClientDataCollector(origin, verify=verify)
    if isinstance(device, PlatformDevice):  # the OS API is a WebAuthn client of its own
        return device.client(collector)
    try:
        return Fido2Client(device, collector, user_interaction=_Bridge(interaction))
    except OSError as error:
        raise NoDevice(f"No compatible device found ({error})", "reconnect the key and try again") from None


def _pin_retries(device: CtapDevice) -> int | None:
    try:
        retries, _ = ClientPin(Ctap2(device)).get_pin_retries()
    except (CtapError, OSError, ValueError):
        return None
    return retries


def _run(
    device: CtapDevice,
    registering: bool,
    timeout_s: float,
    call: Callable[[], T],
    algorithms: Sequence[int] = (),
) -> T:
    try:
        return call()
    except ClientError as error:
        code = error.cause.code if isinstance(error.cause, CtapError) else None
        retries = _pin_retries(device) if code == CtapError.ERR.PIN_INVALID else None
        logger.debug("fido2 client error %r", error)
        raise errors.from_client_error(error, registering, timeout_s, retries, algorithms) from None
    except KeyboardInterrupt:
        raise errors.canceled(registering) from None
    except ValueError as error:  # fido2's extensions refuse what the authenticator lacks (largeBlob...)
        logger.debug("fido2 client refused the request: %r", error)
        raise NotSupported(
            f"Passkeys not supported: {error}",
            "use an authenticator with that feature, or ask the site not to require it",
        ) from None
    except OSError as error:
        raise NoDevice(
            f"No compatible device found (the authenticator stopped answering: {error})",
            "reconnect the key and try again",
        ) from None


def make_credential(
    device: CtapDevice,
    origin: str,
    options: PublicKeyCredentialCreationOptions,
    interaction: Interaction,
    timeout_s: float,
    insecure: bool = False,
) -> RegistrationResponse:
    """Create a credential (``options.rp.id`` is the rpId already checked against ``origin``)."""
    options = dataclasses.replace(options, timeout=int(timeout_s * 1000))
    client = _client(device, origin, insecure, interaction)
    algorithms = [p.alg for p in options.pub_key_cred_params]
    app_id = _app_id(device, options.extensions, "appidExclude", origin)
    if app_id is not None and options.exclude_credentials:
        excluded = [c.id for c in options.exclude_credentials]
        if _run(device, True, timeout_s, lambda: appid.registered_under(device, app_id, excluded)):
            raise errors.from_ctap(CtapError.ERR.CREDENTIAL_EXCLUDED, True, timeout_s, None)
    options, blob_output = _large_blob_without_resident_key(options)
    response = _run(
        device, True, timeout_s, lambda: client.make_credential(options, threading.Event()), algorithms
    )
    if blob_output:
        outputs = AuthenticationExtensionsClientOutputs({**response.client_extension_results, **blob_output})
        response = dataclasses.replace(response, client_extension_results=outputs)
    return response if app_id is None else appid.report(response, "appidExclude", True)


def _large_blob_without_resident_key(
    options: PublicKeyCredentialCreationOptions,
) -> tuple[PublicKeyCredentialCreationOptions, dict[str, object]]:
    """largeBlob needs a discoverable credential (CTAP refuses largeBlobKey without rk, INVALID_OPTION).
    Asked for a server-side credential, a browser leaves it out (``supported: false``) when it is
    "preferred" and refuses when it is "required"; fido2 would send it and fail."""
    extensions = dict(options.extensions or {})
    blob = extensions.get("largeBlob")
    selection = options.authenticator_selection
    resident = selection is not None and (
        bool(selection.require_resident_key)
        or selection.resident_key in (ResidentKeyRequirement.REQUIRED, ResidentKeyRequirement.PREFERRED)
    )
    if not isinstance(blob, Mapping) or resident:
        return options, {}
    if blob.get("support") == "required":
        raise NotSupported(
            "Passkeys not supported: the server requires largeBlob for a credential that is not"
            " discoverable (largeBlob needs residentKey required or preferred)",
            "the site must ask for a discoverable credential (residentKey) along with largeBlob",
        )
    del extensions["largeBlob"]
    return dataclasses.replace(options, extensions=extensions), {"largeBlob": {"supported": False}}


def _app_id(
    device: CtapDevice, extensions: Mapping[str, object] | None, name: str, origin: str
) -> str | None:
    """The checked AppID of extension ``name``; an OS platform API handles the extension itself."""
    return None if isinstance(device, PlatformDevice) else appid.requested(extensions, name, origin)


def transports(device: CtapDevice) -> list[str]:
    """The authenticator's transports (getInfo), which a browser reports with a new credential
    (``response.transports``) so the RP can hint them at sign-in; [] when the device does not say."""
    if isinstance(device, PlatformDevice):
        return []
    try:
        return list(Ctap2(device).info.transports)
    except (CtapError, OSError, ValueError):
        return []


@dataclass(frozen=True)
class Account:
    """One discoverable passkey the authenticator offered, as its assertion describes it."""

    name: str | None
    display_name: str | None
    user_id: str | None  # base64url
    credential_id: str  # base64url

    def label(self) -> str:
        shown = self.name or self.display_name or f"user id {self.user_id}"
        if self.display_name and self.display_name != shown:
            shown += f" ({self.display_name})"
        return f"{shown}, credential {self.credential_id}"

    def as_json(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


def _account(assertion: AssertionResponse) -> Account:
    user = assertion.user or {}
    user_id = user.get("id")
    name, display_name = user.get("name"), user.get("displayName")
    return Account(
        name=name if isinstance(name, str) else None,
        display_name=display_name if isinstance(display_name, str) else None,
        user_id=websafe_encode(user_id) if isinstance(user_id, bytes) else None,
        credential_id=websafe_encode(assertion.credential["id"]),
    )


def get_assertion(
    device: CtapDevice,
    origin: str,
    options: PublicKeyCredentialRequestOptions,
    interaction: Interaction,
    timeout_s: float,
    insecure: bool = False,
    pick: Callable[[Sequence[Account]], int] | None = None,
) -> AuthenticationResponse:
    """Get an assertion; when the authenticator offers several passkeys, ``pick`` chooses (else the first)."""
    options = dataclasses.replace(options, timeout=int(timeout_s * 1000))
    client = _client(device, origin, insecure, interaction)
    app_id = _app_id(device, options.extensions, "appid", origin)
    try:
        selection = _run(device, False, timeout_s, lambda: client.get_assertion(options, threading.Event()))
    except NoCredential:
        if app_id is None or not options.allow_credentials:
            raise
        legacy = dataclasses.replace(options, rp_id=app_id)  # a U2F credential, scoped to the AppID
        client = _client(device, origin, insecure, interaction, app_id)
        selection = _run(device, False, timeout_s, lambda: client.get_assertion(legacy, threading.Event()))
        return appid.report(selection.get_response(0), "appid", True)
    assertions = selection.get_assertions()
    index = 0
    if pick is not None and len(assertions) > 1:
        index = pick([_account(a) for a in assertions])
    response = selection.get_response(index)
    return response if app_id is None else appid.report(response, "appid", False)
