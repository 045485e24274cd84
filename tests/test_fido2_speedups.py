"""keyctl caches two per-class lookups of fido2's data classes (keyctl.fido2_speedups): same answers."""

from __future__ import annotations

import typing
from dataclasses import fields

import fido2.utils
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


def test_type_hints_are_the_uncached_ones() -> None:
    assert vars(fido2.utils)["get_type_hints"](base.Info) == typing.get_type_hints(base.Info)


def test_a_getinfo_answer_parses_the_same_twice() -> None:
    data = {1: ["FIDO_2_0", "FIDO_2_1"], 3: b"\x01" * 16, 4: {"rk": True, "uv": True}, 5: 1200, 6: [2, 1]}
    first, second = base.Info.from_dict(data), base.Info.from_dict(data)
    assert first == second
    assert first.versions == ["FIDO_2_0", "FIDO_2_1"]
    assert first.options == {"rk": True, "uv": True}
    assert first.max_msg_size == 1200
    assert dict(first)[4] == {"rk": True, "uv": True}
