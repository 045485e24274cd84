"""Extension outputs of makeCredential/getAssertion through fido2's Ctap2, over both transports."""

from __future__ import annotations

import hashlib

import pytest
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice

RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]
CDH = hashlib.sha256(b"client data").digest()


@pytest.mark.parametrize("level", [1, 2, 3])
def test_cred_protect_output_reports_the_applied_level(device: CtapHidDevice, level: int) -> None:
    made = Ctap2(device).make_credential(
        CDH, RP, {"id": b"u"}, ES256, extensions={"credProtect": level}, options={"rk": True, "uv": True}
    )
    assert made.auth_data.extensions == {"credProtect": level}


def test_no_cred_protect_request_means_no_extension_output(device: CtapHidDevice) -> None:
    made = Ctap2(device).make_credential(CDH, RP, {"id": b"u"}, ES256, options={"rk": True, "uv": True})
    assert made.auth_data.extensions is None
