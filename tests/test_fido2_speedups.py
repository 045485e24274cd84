"""keyctl caches two per-class lookups of fido2's data classes (keyctl.fido2_speedups): fido2 parses the same
objects with and without them."""

from __future__ import annotations

from dataclasses import fields

from fido2.ctap2 import base
from fido2.ctap2.base import _CborDataObject

from keyctl.fido2_speedups import cache_fido2_class_lookups

cache_fido2_class_lookups()


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_cbor_field_keeps_its_ctap_key() -> None:
    classes = _subclasses(_CborDataObject)
    assert base.Info in classes
    assert base.AssertionResponse in classes
    for cls in classes:
        for number, field in enumerate(fields(cls), start=1):
            assert cls._get_field_key(field) == number, (cls, field.name)  # type: ignore[attr-defined]
    assert (
        _CborDataObject.__dict__["_get_field_key"].__func__.cache_info().currsize > 0
    )  # the cached lookup answered


_PARSE = """
import json, sys
from fido2 import cbor
from fido2.ctap2.base import AssertionResponse, AttestationResponse, Info
from fido2.webauthn import PublicKeyCredentialCreationOptions, PublicKeyCredentialRequestOptions
if sys.argv[1] == "cached":
    from keyctl.fido2_speedups import cache_fido2_class_lookups
    cache_fido2_class_lookups()
data = json.loads(sys.stdin.read())
info, made, asserted = (cbor.decode(bytes.fromhex(data[k])) for k in ("info", "made", "asserted"))
for _ in range(2):  # the second round is answered from the caches
    objects = [
        Info.from_dict(info), AttestationResponse.from_dict(made), AssertionResponse.from_dict(asserted),
        PublicKeyCredentialCreationOptions.from_dict(data["creation"]),
        PublicKeyCredentialRequestOptions.from_dict(data["request"]),
    ]
    for obj in objects:
        print(type(obj).__name__, repr(obj), sorted(dict(obj).items(), key=str))
if sys.argv[1] == "cached":
    import fido2.utils
    from fido2.ctap2.base import _CborDataObject
    hints = vars(fido2.utils)["get_type_hints"].cache_info()
    keys = _CborDataObject.__dict__["_get_field_key"].__func__.cache_info()
    print("cache hits", hints.hits > 0, keys.hits > 0, file=sys.stderr)
"""


def test_fido2_objects_parse_the_same_with_and_without_the_caches() -> None:
    """Real CTAP answers of the virtual authenticator and WebAuthn options, parsed by fido2 alone and by
    fido2 with keyctl's caches (each in a fresh process): the objects are the same."""
    import hashlib
    import json
    import subprocess
    import sys

    from fido2 import cbor
    from fido2.ctap2 import Ctap2

    from keyctl.authenticator import VirtualAuthenticator
    from keyctl.hid.inprocess import connect

    ctap = Ctap2(connect(VirtualAuthenticator()))
    cdh = hashlib.sha256(b"client data").digest()
    rp, user = {"id": "example.com", "name": "Example"}, {"id": b"u1", "name": "ann", "displayName": "Ann"}
    es256 = [{"type": "public-key", "alg": -7}]
    made = ctap.send_cbor(
        Ctap2.CMD.MAKE_CREDENTIAL, base.args(cdh, rp, user, es256, None, None, {"rk": True, "uv": True})
    )
    asserted = ctap.send_cbor(Ctap2.CMD.GET_ASSERTION, base.args("example.com", cdh))
    data = {
        "info": cbor.encode(ctap.send_cbor(Ctap2.CMD.GET_INFO)).hex(),
        "made": cbor.encode(made).hex(),
        "asserted": cbor.encode(asserted).hex(),
        "creation": {
            "rp": rp, "user": {"id": "dTE", "name": "ann", "displayName": "Ann"}, "challenge": "Y2hhbGxlbmdl",
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -8}],
            "timeout": 60000, "excludeCredentials": [], "authenticatorSelection": {"residentKey": "required"},
            "attestation": "none", "extensions": {"credProps": True},
        },
        "request": {"challenge": "Y2hhbGxlbmdl", "rpId": "example.com", "userVerification": "preferred"},
    }  # fmt: skip

    def parse(mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _PARSE, mode],
            input=json.dumps(data),
            capture_output=True,
            text=True,
            timeout=60,
        )

    plain, cached = parse("plain"), parse("cached")
    assert plain.returncode == cached.returncode == 0, plain.stderr + cached.stderr
    assert cached.stderr.strip() == "cache hits True True"  # the caches were in use
    assert plain.stdout.count("\n") == 10
    assert cached.stdout == plain.stdout


def test_a_getinfo_answer_parses_the_same_twice() -> None:
    data = {1: ["FIDO_2_0", "FIDO_2_1"], 3: b"\x01" * 16, 4: {"rk": True, "uv": True}, 5: 1200, 6: [2, 1]}
    first, second = base.Info.from_dict(data), base.Info.from_dict(data)
    assert first == second
    assert first.versions == ["FIDO_2_0", "FIDO_2_1"]
    assert first.options == {"rk": True, "uv": True}
    assert first.max_msg_size == 1200
    assert dict(first)[4] == {"rk": True, "uv": True}
