"""The one place where command results and failures become CTAP status bytes."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from keyctl.authenticator import cbor, model
from keyctl.authenticator.device import Device
from keyctl.authenticator.ports import Link
from keyctl.authenticator.state import AuthenticatorState
from keyctl.authenticator.status import CtapFailure, Status

log = logging.getLogger(__name__)

Handler = Callable[[Device, AuthenticatorState, dict[Any, Any], Link], "dict[int, Any] | None"]

MAKE_CREDENTIAL = 0x01
GET_ASSERTION = 0x02
GET_INFO = 0x04
CLIENT_PIN = 0x06
RESET = 0x07
GET_NEXT_ASSERTION = 0x08
BIO_ENROLLMENT = 0x09
CREDENTIAL_MANAGEMENT = 0x0A
SELECTION = 0x0B
LARGE_BLOBS = 0x0C
CONFIG = 0x0D

# Command modules are imported on a command's first use: a one-shot sign-in process sends four of them.
HANDLERS: dict[int, tuple[str, str]] = {
    MAKE_CREDENTIAL: ("make_credential", "handle"),
    GET_ASSERTION: ("get_assertion", "handle"),
    GET_INFO: ("get_info", "handle"),
    CLIENT_PIN: ("client_pin", "handle"),
    RESET: ("reset", "handle"),
    GET_NEXT_ASSERTION: ("get_assertion", "handle_next"),
    BIO_ENROLLMENT: ("bio_enrollment", "handle"),
    CREDENTIAL_MANAGEMENT: ("credential_management", "handle"),
    SELECTION: ("selection", "handle"),
    LARGE_BLOBS: ("large_blobs", "handle"),
    CONFIG: ("config", "handle"),
}


def _handler(command: int) -> Handler | None:
    if command not in HANDLERS:
        return None
    module, function = HANDLERS[command]
    handler: Handler = getattr(importlib.import_module(f"keyctl.authenticator.commands.{module}"), function)
    return handler


# Commands a model of a real key has only with the getInfo option that announces them.
MODEL_OPTION = {CREDENTIAL_MANAGEMENT: "credMgmt", LARGE_BLOBS: "largeBlobs", CONFIG: "authnrCfg"}


def dispatch(device: Device, message: bytes, link: Link) -> bytes:
    if not message:
        return bytes([Status.INVALID_LENGTH])
    handler = _handler(message[0])
    if handler is None:
        return bytes([Status.INVALID_COMMAND])
    if message[0] != GET_NEXT_ASSERTION:
        device.pending_assertions = None
    if message[0] != CREDENTIAL_MANAGEMENT:
        device.enumeration = None
    try:
        with device.store.transaction() as state:
            option = MODEL_OPTION.get(message[0])
            if option is not None and not model.has(state.model, option):
                raise CtapFailure(Status.INVALID_COMMAND)  # as a key without the command answers
            params = cbor.decode(message[1:]) if len(message) > 1 else {}
            if not isinstance(params, dict):
                raise CtapFailure(Status.CBOR_UNEXPECTED_TYPE)
            result = handler(device, state, params, link)
    except cbor.CborError:
        return bytes([Status.INVALID_CBOR])
    except CtapFailure as failure:
        log.debug("command 0x%02x answered %s", message[0], failure.status.name)
        return bytes([failure.status])
    except Exception:  # a bug or a broken store: answer like a key with an internal error
        log.exception("command 0x%02x failed", message[0])
        return bytes([Status.OTHER])
    return b"\x00" if result is None else b"\x00" + cbor.encode(result)
