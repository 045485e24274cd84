"""Rigs of other parts reused to see model names where keyctl prints an AAGUID: the enrollment rig
(reference server + UDP virtual keys) and the sign-in tests' reference server."""

from tests.enroll.conftest import enroll, rig
from tests.webauthn.conftest import reference, udp_authenticator

__all__ = ["enroll", "reference", "rig", "udp_authenticator"]
