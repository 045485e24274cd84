"""What a technician does to a security key over CTAP2, vendor-neutral, through fido2.

Every method checks what it can before sending anything (PIN length against getInfo, capabilities) so
that bad input changes nothing on the key, and turns CTAP errors into keyctl's catalogue.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from fido2.ctap import CtapError
from fido2.ctap2.base import Ctap2
from fido2.ctap2.bio import BioEnrollment, FPBioEnrollment
from fido2.ctap2.config import Config
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin, PinProtocol
from fido2.hid import CtapHidDevice
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
)

from keyctl.device.errors import forced_pin_change, from_ctap, key_errors
from keyctl.errors import InvalidInput, KeyctlError, NotFound, NotSupported, PinNotSet, PinPolicy
from keyctl.fido2_fixes import keep_empty_values

log = logging.getLogger(__name__)

keep_empty_values()  # credman.update_user_info sends a user entity with an empty name or display name

MAX_PIN_BYTES = 63
CRED_PROTECT_NAMES = {
    1: "userVerificationOptional",
    2: "userVerificationOptionalWithCredentialIDList",
    3: "userVerificationRequired",
}


@dataclass(frozen=True)
class KeyInfo:
    aaguid: str
    versions: tuple[str, ...]
    extensions: tuple[str, ...]
    options: dict[str, bool]
    algorithms: tuple[str, ...]
    pin_set: bool
    pin_retries: int | None
    uv_retries: int | None
    min_pin_length: int
    force_pin_change: bool
    remaining_discoverable_credentials: int | None
    firmware_version: int
    max_msg_size: int
    transports: tuple[str, ...]
    pin_uv_protocols: tuple[int, ...]


@dataclass(frozen=True)
class Attested:
    fmt: str  # "packed", "none", ...
    kind: str  # basic, self, attca, none, invalid
    chain: tuple[bytes, ...]  # DER certificates, leaf first (empty for self/none)
    problem: str | None


@dataclass(frozen=True)
class Fingerprint:
    template_id: str  # hex
    name: str | None


@dataclass(frozen=True)
class SampleProgress:
    """One fingerprint sample taken during ``add_fingerprint``."""

    template_id: str  # hex
    status: str  # "good", or what went wrong ("too fast", "poor quality", ...)
    good: bool
    remaining: int  # good samples still needed; 0 when the fingerprint is enrolled
    required: int  # good samples the key asks for in all


@dataclass(frozen=True)
class StoredCredential:
    rp_id: str
    user_name: str
    display_name: str
    user_id: str  # base64url
    credential_id: str  # base64url
    cred_protect: str | None
    large_blob_key: bool


class SecurityKey:
    def __init__(self, device: CtapHidDevice) -> None:
        self.device = device
        with key_errors():
            self.ctap2 = Ctap2(device)

    def info(self) -> KeyInfo:
        with key_errors():
            info = self.ctap2.get_info()
            pin_set = bool(info.options.get("clientPin"))
            pin_retries = uv_retries = None
            if ClientPin.is_supported(info) and pin_set:
                pin_retries = ClientPin(self.ctap2).get_pin_retries()[0]
            if info.options.get("uv") is not None and ClientPin.is_supported(info):
                uv_retries = ClientPin(self.ctap2).get_uv_retries()
        return KeyInfo(
            aaguid=str(info.aaguid),
            versions=tuple(info.versions),
            extensions=tuple(info.extensions),
            options=dict(info.options),
            algorithms=tuple(_algorithm_name(a) for a in info.algorithms),
            pin_set=pin_set,
            pin_retries=pin_retries,
            uv_retries=uv_retries,
            min_pin_length=info.min_pin_length,
            force_pin_change=info.force_pin_change,
            remaining_discoverable_credentials=info.remaining_disc_creds,
            firmware_version=info.firmware_version,
            max_msg_size=info.max_msg_size,
            transports=tuple(info.transports),
            pin_uv_protocols=tuple(info.pin_uv_protocols),
        )

    # --- PIN -------------------------------------------------------------------------------------

    def _client_pin(self) -> ClientPin:
        if not ClientPin.is_supported(self.ctap2.info):
            raise NotSupported("this key has no PIN support (clientPin)", "use a FIDO2 key with a PIN")
        return ClientPin(self.ctap2)

    def check_new_pin(self, pin: str) -> None:
        """Refuse a PIN the key would refuse, before anything is sent (length in code points, per CTAP)."""
        minimum = self.ctap2.get_info().min_pin_length
        if len(pin) < minimum:
            raise PinPolicy(
                f"the new PIN is too short: this key needs at least {minimum} characters",
                "choose a longer PIN",
            )
        if len(pin.encode()) > MAX_PIN_BYTES:
            raise PinPolicy(
                f"the new PIN is too long: at most {MAX_PIN_BYTES} bytes in UTF-8", "choose a shorter PIN"
            )

    def pin_retries(self) -> tuple[int, bool]:
        """PIN attempts left, and whether the key must be re-inserted before the next attempt."""
        with key_errors():
            retries, power_cycle = self._client_pin().get_pin_retries()
        return retries, bool(power_cycle)

    def set_pin(self, pin: str) -> None:
        client_pin = self._client_pin()
        if self.ctap2.info.options.get("clientPin"):
            raise InvalidInput("this key already has a PIN", "change it with 'keyctl key pin change'")
        self.check_new_pin(pin)
        with key_errors():
            client_pin.set_pin(pin)

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        client_pin = self._client_pin()
        self.check_new_pin(new_pin)
        with pin_errors(client_pin):
            client_pin.change_pin(old_pin, new_pin)

    def verify_pin(self, pin: str) -> None:
        self._token(pin, ClientPin.PERMISSION(0))

    def _token(
        self, pin: str, permissions: ClientPin.PERMISSION, rp_id: str | None = None
    ) -> tuple[PinProtocol, bytes]:
        client_pin = self._client_pin()
        if not self.ctap2.info.options.get("clientPin"):
            raise PinNotSet("the key has no PIN yet", "set one first: 'keyctl key pin set'")
        if self.ctap2.info.force_pin_change:  # the PIN is refused, right or wrong: not worth an attempt
            raise forced_pin_change()
        with pin_errors(client_pin):
            if permissions and ClientPin.is_token_supported(self.ctap2.info):
                token = client_pin.get_pin_token(pin, permissions, rp_id)
            else:
                token = client_pin.get_pin_token(pin)
        return client_pin.protocol, token

    # --- credentials ------------------------------------------------------------------------------

    def _credman(self, pin: str) -> CredentialManagement:
        if not CredentialManagement.is_supported(self.ctap2.info):
            raise NotSupported(
                "this key cannot list or delete credentials (credMgmt)", "use the key's vendor tool"
            )
        protocol, token = self._token(pin, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        return CredentialManagement(self.ctap2, protocol, token)

    def credentials(self, pin: str, rp_id: str | None = None) -> list[StoredCredential]:
        credman = self._credman(pin)
        found: list[StoredCredential] = []
        with key_errors():
            if credman.get_metadata().get(CredentialManagement.RESULT.EXISTING_CRED_COUNT, 0) == 0:
                return []
            for rp in credman.enumerate_rps():
                rp_entity = rp[CredentialManagement.RESULT.RP]
                if rp_id is not None and rp_entity["id"] != rp_id:
                    continue
                for cred in credman.enumerate_creds(rp[CredentialManagement.RESULT.RP_ID_HASH]):
                    user = cred[CredentialManagement.RESULT.USER]
                    protect = cred.get(CredentialManagement.RESULT.CRED_PROTECT)
                    found.append(
                        StoredCredential(
                            rp_id=rp_entity["id"],
                            user_name=user.get("name", ""),
                            display_name=user.get("displayName", ""),
                            user_id=websafe_encode(user["id"]),
                            credential_id=websafe_encode(
                                cred[CredentialManagement.RESULT.CREDENTIAL_ID]["id"]
                            ),
                            cred_protect=CRED_PROTECT_NAMES.get(protect) if protect else None,
                            large_blob_key=CredentialManagement.RESULT.LARGE_BLOB_KEY in cred,
                        )
                    )
        return found

    def _find(self, pin: str, credential_id: str) -> tuple[CredentialManagement, StoredCredential]:
        decoded = _decode_credential_id(credential_id)
        matches = [c for c in self.credentials(pin) if websafe_decode(c.credential_id) == decoded]
        if not matches:
            raise NotFound("Passkey not found on this device", "list them with 'keyctl key creds list'")
        return self._credman(pin), matches[0]

    def delete_credential(self, pin: str, credential_id: str) -> StoredCredential:
        credman, cred = self._find(pin, credential_id)
        with key_errors():
            credman.delete_cred(_descriptor(cred.credential_id))
        return cred

    def update_user(
        self, pin: str, credential_id: str, name: str | None, display_name: str | None
    ) -> StoredCredential:
        if not CredentialManagement.is_update_supported(self.ctap2.info):
            raise NotSupported("this key cannot update user information (credMgmt update)", "")
        credman, cred = self._find(pin, credential_id)
        user = PublicKeyCredentialUserEntity(
            id=websafe_decode(cred.user_id),
            name=cred.user_name if name is None else name,
            display_name=cred.display_name if display_name is None else display_name,
        )
        with key_errors():
            credman.update_user_info(_descriptor(cred.credential_id), user)
        return cred

    # --- fingerprints -----------------------------------------------------------------------------

    def _bio(self, pin: str) -> FPBioEnrollment:
        if not BioEnrollment.is_supported(self.ctap2.info):
            raise NotSupported(
                "this key has no fingerprint sensor (bioEnroll)",
                "use a biometric key, or protect it with a PIN",
            )
        protocol, token = self._token(pin, ClientPin.PERMISSION.BIO_ENROLL)
        with key_errors():
            return FPBioEnrollment(self.ctap2, protocol, token)

    def fingerprints(self, pin: str) -> list[Fingerprint]:
        bio = self._bio(pin)
        with key_errors():
            return [Fingerprint(t.hex(), name or None) for t, name in bio.enumerate_enrollments().items()]

    def add_fingerprint(self, pin: str, name: str | None = None) -> Generator[SampleProgress, None, None]:
        """Enroll a finger, yielding each sample as the user touches the sensor (bad ones are retaken).

        The last progress has ``remaining == 0``; the name is set then. Stopping the iteration early
        (Ctrl-C, an error) cancels the enrollment on the key.
        """
        bio = self._bio(pin)
        with key_errors():
            sensor = bio.get_fingerprint_sensor_info()
        if name is not None:
            _check_fingerprint_name(name, sensor.get(BioEnrollment.RESULT.MAX_TEMPLATE_FRIENDLY_NAME))
        required = sensor.get(BioEnrollment.RESULT.MAX_SAMPLES_REQUIRED, 0)
        template_id: bytes | None = None
        done = False
        try:
            with key_errors():
                template_id, status, remaining = bio.enroll_begin()
                while True:
                    done = remaining == 0
                    good = status == FPBioEnrollment.FEEDBACK.FP_GOOD
                    if done and name is not None:
                        bio.set_name(template_id, name)
                    yield SampleProgress(template_id.hex(), _sample_status(status), good, remaining, required)
                    if done:
                        return
                    status, remaining = bio.enroll_capture_next(template_id)
        finally:
            if template_id is not None and not done:
                with contextlib.suppress(CtapError, OSError):
                    bio.enroll_cancel()

    def _fingerprint(self, pin: str, template_id: str) -> tuple[FPBioEnrollment, Fingerprint]:
        wanted = _decode_template_id(template_id)
        bio = self._bio(pin)
        with key_errors():
            enrolled = bio.enumerate_enrollments()
        if wanted not in enrolled:
            raise NotFound(
                f"no fingerprint {template_id} on this key", "list them with 'keyctl key fingerprints list'"
            )
        return bio, Fingerprint(wanted.hex(), enrolled[wanted] or None)

    def rename_fingerprint(self, pin: str, template_id: str, name: str) -> Fingerprint:
        bio, found = self._fingerprint(pin, template_id)
        with key_errors():
            limit = bio.get_fingerprint_sensor_info().get(BioEnrollment.RESULT.MAX_TEMPLATE_FRIENDLY_NAME)
        _check_fingerprint_name(name, limit)
        with key_errors():
            bio.set_name(bytes.fromhex(found.template_id), name)
        return Fingerprint(found.template_id, name)

    def delete_fingerprint(self, pin: str, template_id: str) -> Fingerprint:
        bio, found = self._fingerprint(pin, template_id)
        with key_errors():
            bio.remove_enrollment(bytes.fromhex(found.template_id))
        return found

    # --- config -----------------------------------------------------------------------------------

    def _config(self, pin: str) -> Config:
        if not Config.is_supported(self.ctap2.info):
            raise NotSupported("this key has no configuration command (authnrCfg)", "")
        protocol, token = self._token(pin, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
        return Config(self.ctap2, protocol, token)

    def set_min_pin_length(
        self, pin: str, length: int | None, rp_ids: Sequence[str], force_change: bool
    ) -> None:
        info = self.ctap2.get_info()
        if "setMinPINLength" not in info.options:
            raise NotSupported("this key cannot change its minimum PIN length (setMinPINLength)", "")
        if length is not None and not info.min_pin_length <= length <= MAX_PIN_BYTES:
            raise PinPolicy(
                f"minimum PIN length {length} is out of range: it can only grow, from {info.min_pin_length} "
                f"up to {MAX_PIN_BYTES}",
                "choose a larger value",
            )
        config = self._config(pin)
        with key_errors():
            config.set_min_pin_length(
                min_pin_length=length, rp_ids=list(rp_ids) or None, force_change_pin=force_change
            )

    def set_always_uv(self, pin: str, enabled: bool) -> bool:
        """Toggle alwaysUv only if it differs from ``enabled``; returns whether anything changed."""
        current = self.ctap2.get_info().options.get("alwaysUv")
        if current is None:
            raise NotSupported("this key has no alwaysUv setting", "")
        if current == enabled:
            return False
        config = self._config(pin)
        with key_errors():
            config.toggle_always_uv()
        return True

    def enable_enterprise_attestation(self, pin: str) -> None:
        if "ep" not in self.ctap2.get_info().options:
            raise NotSupported("this key has no enterprise attestation (ep)", "")
        config = self._config(pin)
        with key_errors():
            config.enable_enterprise_attestation()

    # --- attestation -----------------------------------------------------------------------------

    def attestation_sample(
        self, rp_id: str, pin: str | None, on_touch_needed: Callable[[], None]
    ) -> Attested:
        """Make a throwaway non-resident credential (nothing stays on the key) and verify its attestation
        statement's signature; the caller judges the certificate chain."""
        import os

        from fido2.attestation.base import Attestation, InvalidAttestation

        client_data_hash = os.urandom(32)
        pin_uv_param = pin_uv_protocol = None
        if pin is not None:
            protocol, token = self._token(pin, ClientPin.PERMISSION.MAKE_CREDENTIAL, rp_id)
            pin_uv_param, pin_uv_protocol = protocol.authenticate(token, client_data_hash), protocol.VERSION
        prompted = False

        def keepalive(status: int) -> None:
            nonlocal prompted
            if not prompted:
                prompted = True
                on_touch_needed()

        with pin_errors(ClientPin(self.ctap2)) if pin is not None else key_errors():
            response = self.ctap2.make_credential(
                client_data_hash,
                {"id": rp_id, "name": "keyctl audit"},
                {"id": os.urandom(16), "name": "keyctl-audit", "displayName": "keyctl audit"},
                [{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -8}],
                options={"rk": False},
                pin_uv_param=pin_uv_param,
                pin_uv_protocol=pin_uv_protocol,
                on_keepalive=keepalive,
            )
        try:
            result = Attestation.for_type(response.fmt)().verify(
                response.att_stmt, response.auth_data, client_data_hash
            )
        except InvalidAttestation as error:
            return Attested(
                response.fmt, "invalid", (), f"the attestation statement does not verify ({error})"
            )
        return Attested(response.fmt, result.attestation_type.name.lower(), tuple(result.trust_path), None)

    # --- reset and wink ---------------------------------------------------------------------------

    def reset(self, on_touch_needed: Callable[[], None]) -> None:
        """Factory-reset the key: deletes every credential and the PIN. Needs a touch, soon after power-up."""
        prompted = False

        def keepalive(status: int) -> None:
            nonlocal prompted
            if not prompted:
                prompted = True
                on_touch_needed()

        with key_errors():
            self.ctap2.reset(on_keepalive=keepalive)

    def wink(self) -> None:
        from fido2.hid import CAPABILITY

        if not self.device.capabilities & CAPABILITY.WINK:
            raise NotSupported("this key cannot wink", "")
        with key_errors():
            self.device.wink()


@contextmanager
def pin_errors(client_pin: ClientPin) -> Iterator[None]:
    """Like key_errors, but a wrong PIN reports the attempts left (asked of the key afterwards)."""
    try:
        with key_errors():
            yield
    except KeyctlError as mapped:
        cause = mapped.__cause__
        if isinstance(cause, CtapError) and cause.code in (
            CtapError.ERR.PIN_INVALID,
            CtapError.ERR.PIN_AUTH_INVALID,
        ):
            try:
                retries: int | None = client_pin.get_pin_retries()[0]
            except CtapError:
                retries = None
            raise from_ctap(cause, retries) from cause
        raise


def _sample_status(status: int) -> str:
    try:
        return FPBioEnrollment.FEEDBACK(status).name.removeprefix("FP_").replace("_", " ").lower()
    except ValueError:
        return f"sample status 0x{status:02X}"


def _check_fingerprint_name(name: str, limit: int | None) -> None:
    if not name.strip():
        raise InvalidInput("a fingerprint name cannot be empty", "give a name such as 'left thumb'")
    if limit is not None and len(name.encode()) > limit:
        raise InvalidInput(
            f"the fingerprint name is too long: this key takes at most {limit} bytes", "choose a shorter name"
        )


def _decode_template_id(value: str) -> bytes:
    try:
        if not value or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
            raise ValueError(value)
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not a hex template id", "copy it from 'keyctl key fingerprints list'"
        ) from None


def _decode_credential_id(value: str) -> bytes:
    try:
        if not value or not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value):
            raise ValueError(value)
        return websafe_decode(value)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not a base64url credential id", "copy it from 'keyctl key creds list'"
        ) from None


def _descriptor(credential_id: str) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        type=PublicKeyCredentialType.PUBLIC_KEY, id=websafe_decode(credential_id)
    )


def _algorithm_name(entry: object) -> str:
    from fido2.cose import CoseKey, UnsupportedKey

    alg = entry.get("alg") if isinstance(entry, dict) else None
    if not isinstance(alg, int):
        return str(entry)
    key_type = CoseKey.for_alg(alg)
    return str(alg) if key_type is UnsupportedKey else key_type.__name__
