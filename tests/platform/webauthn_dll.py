"""A fake webauthn.dll: the function table python-fido2's real ``fido2.client.win_api``/``windows`` code
loads with ``ctypes.WinDLL("webauthn")`` and calls through ctypes.

It works at the C boundary: arguments are checked against the argtypes fido2 assigns (as ctypes does),
the structures fido2 passes are read from memory by their layout (``from_address``), the request goes to
keyctl's virtual authenticator over CTAPHID (``keyctl.hid.inprocess.connect`` + fido2's ``Ctap2``), and the
answer is written into DLL-owned WEBAUTHN_CREDENTIAL_ATTESTATION / WEBAUTHN_ASSERTION memory whose address
goes into the caller's out-pointer, until fido2 frees it with WebAuthNFree*. Failures are HRESULTs, which
the fake ``ctypes.HRESULT`` restype turns into OSError(winerror=...) as ctypes does on Windows.

What this fake assumes about Windows (unverified: nothing here has run on Windows): how it maps an
authenticator's CTAP status to an HRESULT (``HRESULT_FOR_CTAP``), that the user verifies whenever the RP
does not discourage it, and that with several discoverable credentials the user picks the first one.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fido2 import cbor
from fido2.ctap import CtapError
from fido2.ctap2.base import Ctap2
from fido2.webauthn import AttestationObject

from keyctl.authenticator import VirtualAuthenticator
from keyctl.hid.inprocess import connect

# HRESULTs from webauthn.h's list for WebAuthNGetErrorName (written out here, not taken from keyctl).
S_OK = 0
E_FAIL = 0x80004005
NTE_EXISTS = 0x8009000F
NTE_NOT_FOUND = 0x80090011
NTE_TOKEN_KEYSET_STORAGE_FULL = 0x80090023
NTE_INVALID_PARAMETER = 0x80090027
NTE_NOT_SUPPORTED = 0x80090029
NTE_DEVICE_NOT_FOUND = 0x80090035
NTE_USER_CANCELLED = 0x80090036
ERROR_NOT_SUPPORTED = 0x80070032
ERROR_CANCELLED = 0x800704C7
ERROR_TIMEOUT = 0x800705B4

ERROR_NAMES = {
    S_OK: "Success",
    NTE_EXISTS: "InvalidStateError",
    ERROR_NOT_SUPPORTED: "ConstraintError",
    NTE_NOT_SUPPORTED: "ConstraintError",
    NTE_TOKEN_KEYSET_STORAGE_FULL: "ConstraintError",
    NTE_INVALID_PARAMETER: "NotSupportedError",
    NTE_DEVICE_NOT_FOUND: "NotAllowedError",
    NTE_NOT_FOUND: "NotAllowedError",
    ERROR_CANCELLED: "NotAllowedError",
    NTE_USER_CANCELLED: "NotAllowedError",
    ERROR_TIMEOUT: "NotAllowedError",
}

HRESULT_FOR_CTAP = {
    CtapError.ERR.CREDENTIAL_EXCLUDED: NTE_EXISTS,
    CtapError.ERR.NO_CREDENTIALS: NTE_NOT_FOUND,
    CtapError.ERR.KEY_STORE_FULL: NTE_TOKEN_KEYSET_STORAGE_FULL,
    CtapError.ERR.OPERATION_DENIED: NTE_USER_CANCELLED,
    CtapError.ERR.USER_ACTION_TIMEOUT: ERROR_TIMEOUT,
    CtapError.ERR.UNSUPPORTED_ALGORITHM: NTE_NOT_SUPPORTED,
}

# WEBAUTHN_USER_VERIFICATION_REQUIREMENT_DISCOURAGED, WEBAUTHN_CTAP_TRANSPORT_USB
UV_DISCOURAGED = 3
TRANSPORT_USB = 1

# The version of the structures the DLL returns, by API version (webauthn.h).
ATTESTATION_VERSIONS = {1: 3, 3: 4, 6: 5, 7: 6, 8: 7, 9: 8}
ASSERTION_VERSIONS = {1: 1, 3: 2, 4: 3, 6: 4, 7: 5, 9: 6}


def _struct_version(versions: dict[int, int], api_version: int) -> int:
    return versions[max(v for v in versions if v <= api_version)]


class Hresult(ctypes.c_int32):
    """ctypes.HRESULT as on Windows: as a restype, a failed (negative) HRESULT raises OSError whose
    ``winerror`` is that HRESULT as a signed int."""

    @staticmethod
    def _check_retval_(value: int) -> int:
        signed = ctypes.c_int32(value).value
        if signed >= 0:
            return signed
        error = OSError(errno.EINVAL, f"webauthn.dll: {ERROR_NAMES.get(value, 'UnknownError')}")
        error.winerror = signed  # type: ignore[attr-defined]  # set by ctypes.WinError on Windows
        raise error


class Function:
    """One export as ctypes presents it: the caller sets argtypes/restype; each argument must pass its
    argtype's ``from_param`` (else ctypes.ArgumentError, as ctypes raises); the restype's
    ``_check_retval_`` sees the result."""

    def __init__(self, implementation: Callable[..., Any]) -> None:
        self.implementation = implementation
        self.argtypes: list[Any] | None = None
        self.restype: Any = ctypes.c_int

    def __call__(self, *args: Any) -> Any:
        if self.argtypes is not None:
            if len(args) != len(self.argtypes):
                raise TypeError(f"takes {len(self.argtypes)} arguments ({len(args)} given)")
            for number, (argtype, arg) in enumerate(zip(self.argtypes, args, strict=True), 1):
                try:
                    argtype.from_param(arg)
                except (TypeError, ValueError) as error:
                    raise ctypes.ArgumentError(f"argument {number}: {error!r}") from None
        result = self.implementation(*args)
        check = getattr(self.restype, "_check_retval_", None)
        return check(result) if check is not None else result


def _at(reference: Any, structure: type[Any]) -> Any:
    """What a C function sees through a pointer argument: the memory at that address, by layout."""
    return structure.from_address(ctypes.addressof(reference._obj))


def _read(pointer: Any, size: int) -> bytes:
    return ctypes.string_at(pointer, size) if size else b""


def _credential_list(pointer: Any) -> tuple[bytes, ...]:
    """WEBAUTHN_CREDENTIAL_LIST: credential ids (type checked: public-key only)."""
    if not pointer:
        return ()
    found = pointer.contents
    ids = []
    for index in range(found.cCredentials):
        credential = found.ppCredentials[index].contents
        assert credential.pwszCredentialType == "public-key"
        ids.append(_read(credential.pbId, credential.cbId))
    return tuple(ids)


def _credentials(found: Any) -> tuple[bytes, ...]:
    """WEBAUTHN_CREDENTIALS (the list before API version 3/4)."""
    return tuple(
        _read(found.pCredentials[i].pbId, found.pCredentials[i].cbId) for i in range(found.cCredentials)
    )


def _extensions(found: Any) -> tuple[str, ...]:
    return tuple(found.pExtensions[i].pwszExtensionIdentifier for i in range(found.cExtensions))


def _guid(pointer: Any) -> str | None:
    return str(pointer.contents) if pointer else None


@dataclass(frozen=True)
class MakeCredentialCall:
    """WebAuthNAuthenticatorMakeCredential's arguments as the DLL read them."""

    rp_id: str
    rp_name: str
    user_id: bytes
    user_name: str
    user_display_name: str | None
    credential_types: tuple[str, ...]
    algorithms: tuple[int, ...]
    client_data: dict[str, Any]
    hash_algorithm: str
    options_version: int
    timeout_ms: int
    require_resident_key: bool
    prefer_resident_key: bool
    user_verification: int
    attestation: int
    exclude: tuple[bytes, ...]
    cancellation_id: str | None
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class GetAssertionCall:
    """WebAuthNAuthenticatorGetAssertion's arguments as the DLL read them."""

    rp_id: str
    client_data: dict[str, Any]
    hash_algorithm: str
    options_version: int
    timeout_ms: int
    attachment: int
    user_verification: int
    allow: tuple[bytes, ...]
    cancellation_id: str | None


class FakeWebAuthnDll:
    """webauthn.dll in front of a virtual authenticator; ``cancel`` makes the user press Cancel in the
    Windows Security dialog (NTE_USER_CANCELLED before the authenticator is asked)."""

    def __init__(self, api_version: int, authenticator: VirtualAuthenticator | None = None) -> None:
        self.api_version = api_version
        self.authenticator = authenticator or VirtualAuthenticator()
        self.cancel = False
        self.calls: list[MakeCredentialCall | GetAssertionCall] = []
        self.live: dict[int, tuple[Any, list[Any]]] = {}  # DLL-owned answers not yet freed
        self.bad_frees: list[int] = []
        self.cancellation_ids: list[str] = []
        self.cancelled: list[str] = []
        exports: dict[str, Callable[..., Any]] = {
            "WebAuthNGetApiVersionNumber": lambda: self.api_version,
            "WebAuthNIsUserVerifyingPlatformAuthenticatorAvailable": self._is_uvpaa,
            "WebAuthNAuthenticatorMakeCredential": self._make_credential,
            "WebAuthNAuthenticatorGetAssertion": self._get_assertion,
            "WebAuthNFreeCredentialAttestation": self._free,
            "WebAuthNFreeAssertion": self._free,
            "WebAuthNGetCancellationId": self._cancellation_id,
            "WebAuthNCancelCurrentOperation": self._cancel_operation,
            "WebAuthNGetErrorName": lambda hresult: ERROR_NAMES.get(hresult & 0xFFFFFFFF, "UnknownError"),
        }
        for name, implementation in exports.items():
            setattr(self, name, Function(implementation))

    def _is_uvpaa(self, available: Any) -> int:
        ctypes.c_bool.from_address(ctypes.addressof(available._obj)).value = True
        return S_OK

    def _cancellation_id(self, guid: Any) -> int:
        from fido2.client.win_api import GUID

        ctypes.memmove(ctypes.addressof(guid._obj), uuid.uuid4().bytes, ctypes.sizeof(GUID))
        self.cancellation_ids.append(str(_at(guid, GUID)))
        return S_OK

    def _cancel_operation(self, guid: Any) -> int:
        from fido2.client.win_api import GUID

        self.cancelled.append(str(_at(guid, GUID)))
        return S_OK

    def _free(self, answer: Any) -> None:
        if self.live.pop(ctypes.addressof(answer._obj), None) is None:
            self.bad_frees.append(ctypes.addressof(answer._obj))

    def _client_data(self, reference: Any) -> tuple[bytes, dict[str, Any], str]:
        from fido2.client.win_api import WebAuthNClientData

        found = _at(reference, WebAuthNClientData)
        raw = _read(found.pbClientDataJSON, found.cbClientDataJSON)
        return raw, json.loads(raw), found.pwszHashAlgId

    def _hand_over(self, answer: Any, keep: list[Any], out: Any) -> None:
        """Keep the answer alive until it is freed and write its address into the caller's pointer."""
        self.live[ctypes.addressof(answer)] = (answer, keep)
        ctypes.c_void_p.from_address(ctypes.addressof(out._obj)).value = ctypes.addressof(answer)

    def _make_credential(
        self, hwnd: Any, rp: Any, user: Any, params: Any, client_data: Any, options: Any, out: Any
    ) -> int:
        from fido2.client import win_api

        rp_info = _at(rp, win_api.WebAuthNRpEntityInformation)
        user_info = _at(user, win_api.WebAuthNUserEntityInformation)
        cose = _at(params, win_api.WebAuthNCoseCredentialParameters)
        raw, data, hash_algorithm = self._client_data(client_data)
        found = _at(options, win_api.WebAuthNMakeCredentialOptions)
        version = found.dwVersion
        cose_params = [cose.pCredentialParameters[i] for i in range(cose.cCredentialParameters)]
        call = MakeCredentialCall(
            rp_id=rp_info.pwszId,
            rp_name=rp_info.pwszName,
            user_id=_read(user_info.pbId, user_info.cbId),
            user_name=user_info.pwszName,
            user_display_name=user_info.pwszDisplayName,
            credential_types=tuple(p.pwszCredentialType for p in cose_params),
            algorithms=tuple(p.lAlg for p in cose_params),
            client_data=data,
            hash_algorithm=hash_algorithm,
            options_version=version,
            timeout_ms=found.dwTimeoutMilliseconds,
            require_resident_key=bool(found.bRequireResidentKey),
            prefer_resident_key=version >= 4 and bool(found.bPreferResidentKey),
            user_verification=found.dwUserVerificationRequirement,
            attestation=found.dwAttestationConveyancePreference,
            exclude=(
                _credential_list(found.pExcludeCredentialList)
                if version >= 3
                else _credentials(found.CredentialList)
            ),
            cancellation_id=_guid(found.pCancellationId) if version >= 2 else None,
            extensions=_extensions(found.Extensions),
        )
        self.calls.append(call)
        if hash_algorithm != "SHA-256":
            return NTE_INVALID_PARAMETER
        if self.cancel:
            return NTE_USER_CANCELLED
        ctap = Ctap2(connect(self.authenticator))
        resident = call.require_resident_key or (
            call.prefer_resident_key and bool(ctap.info.options.get("rk"))
        )
        flags = {"rk": resident, **self._uv(ctap, call.user_verification)}
        try:
            response = ctap.make_credential(
                hashlib.sha256(raw).digest(),
                {"id": call.rp_id, "name": call.rp_name},
                {"id": call.user_id, "name": call.user_name, "displayName": call.user_display_name},
                [{"type": t, "alg": a} for t, a in zip(call.credential_types, call.algorithms, strict=True)],
                [{"type": "public-key", "id": i} for i in call.exclude] or None,
                options=flags,
            )
        except CtapError as error:
            return HRESULT_FOR_CTAP.get(error.code, E_FAIL)
        credential = response.auth_data.credential_data
        assert credential is not None
        answer = _owned("WebAuthNCredentialAttestation")
        keep: list[Any] = []
        answer.dwVersion = _struct_version(ATTESTATION_VERSIONS, self.api_version)
        answer.pwszFormatType = response.fmt
        parts = (
            ("AuthenticatorData", bytes(response.auth_data)),
            ("Attestation", cbor.encode(response.att_stmt)),
            (
                "AttestationObject",
                bytes(AttestationObject.create(response.fmt, response.auth_data, response.att_stmt)),
            ),
            ("CredentialId", credential.credential_id),
        )
        for name, value in parts:
            _put(answer, name, value, keep)
        answer.dwUsedTransport = TRANSPORT_USB  # from version 3, the oldest fido2 reads
        if answer.dwVersion >= 4:
            answer.bResidentKey = resident
        self._hand_over(answer, keep, out)
        return S_OK

    def _get_assertion(self, hwnd: Any, rp_id: str, client_data: Any, options: Any, out: Any) -> int:
        from fido2.client import win_api

        raw, data, hash_algorithm = self._client_data(client_data)
        found = _at(options, win_api.WebAuthNGetAssertionOptions)
        version = found.dwVersion
        call = GetAssertionCall(
            rp_id=rp_id,
            client_data=data,
            hash_algorithm=hash_algorithm,
            options_version=version,
            timeout_ms=found.dwTimeoutMilliseconds,
            attachment=found.dwAuthenticatorAttachment,
            user_verification=found.dwUserVerificationRequirement,
            allow=(
                _credential_list(found.pAllowCredentialList)
                if version >= 4
                else _credentials(found.CredentialList)
            ),
            cancellation_id=_guid(found.pCancellationId) if version >= 3 else None,
        )
        self.calls.append(call)
        if hash_algorithm != "SHA-256":
            return NTE_INVALID_PARAMETER
        if self.cancel:
            return NTE_USER_CANCELLED
        ctap = Ctap2(connect(self.authenticator))
        try:
            response = ctap.get_assertion(
                rp_id,
                hashlib.sha256(raw).digest(),
                [{"type": "public-key", "id": i} for i in call.allow] or None,
                options=self._uv(ctap, call.user_verification) or None,
            )
        except CtapError as error:
            return HRESULT_FOR_CTAP.get(error.code, E_FAIL)
        answer = _owned("WebAuthNAssertion")
        keep: list[Any] = []
        answer.dwVersion = _struct_version(ASSERTION_VERSIONS, self.api_version)
        _put(answer, "AuthenticatorData", bytes(response.auth_data), keep)
        _put(answer, "Signature", response.signature, keep)
        answer.Credential.dwVersion = 1
        answer.Credential.pwszCredentialType = response.credential["type"]
        _put(answer.Credential, "Id", response.credential["id"], keep)
        if response.user:
            _put(answer, "UserId", response.user["id"], keep)
        self._hand_over(answer, keep, out)
        return S_OK

    @staticmethod
    def _uv(ctap: Ctap2, requirement: int) -> dict[str, bool]:
        """Windows verifies the user (Hello, or the key's own UV) unless the RP discourages it."""
        return {"uv": True} if requirement != UV_DISCOURAGED and ctap.info.options.get("uv") else {}


def _put(structure: Any, name: str, value: bytes, keep: list[Any]) -> None:
    """A DLL-owned byte buffer in the cbNAME/pbNAME pair."""
    buffer = (ctypes.c_ubyte * len(value)).from_buffer_copy(value)
    keep.append(buffer)
    setattr(structure, f"cb{name}", len(value))
    setattr(structure, f"pb{name}", ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ubyte)))


def _owned(name: str) -> Any:
    """The DLL's own memory for an answer: fido2's layout, without fido2's ``__del__`` (which calls
    WebAuthNFree* on fido2's view of it)."""
    from fido2.client import win_api

    return type(name, (getattr(win_api, name),), {"__del__": lambda self: None})()
