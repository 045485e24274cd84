"""The CBOR subset CTAP2 uses (CTAP 2.1 §8 canonical encoding), strict on input.

Decoding refuses what a careful key refuses: indefinite lengths, truncated items, trailing bytes,
nesting deeper than CTAP allows, floats and tags, and duplicate or unhashable map keys.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

MAX_DEPTH = 8
_SIMPLE: dict[int, bool | None] = {20: False, 21: True, 22: None}
_KEY_TYPES = (int, str, bytes)


class CborError(ValueError):
    """Malformed or unsupported CBOR."""


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    if value < 0x100:
        return bytes([major << 5 | 24, value])
    if value < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", value)
    if value < 0x100000000:
        return bytes([major << 5 | 26]) + struct.pack(">I", value)
    return bytes([major << 5 | 27]) + struct.pack(">Q", value)


def _sort_key(item: tuple[bytes, Any]) -> tuple[int, bytes]:
    return len(item[0]), item[0]  # canonical CTAP2 order: shorter encoded keys first, then bytewise


def encode(value: Any) -> bytes:
    kind = type(value)  # exact types first: this runs for every field of every response
    if kind is int:
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if kind is bytes:
        raw: bytes = value
        return _head(2, len(raw)) + raw
    if kind is str:
        text: bytes = value.encode()
        return _head(3, len(text)) + text
    if kind is dict or isinstance(value, Mapping):
        items = sorted([(encode(k), v) for k, v in value.items()], key=_sort_key)
        return _head(5, len(items)) + b"".join([k + encode(v) for k, v in items])
    if kind is bool:
        return b"\xf5" if value else b"\xf4"
    if value is None:
        return b"\xf6"
    if isinstance(value, int):  # IntEnum and other int subclasses
        return encode(int(value))
    if isinstance(value, bytearray | memoryview):
        return encode(bytes(value))
    if kind is list or kind is tuple or isinstance(value, Sequence):
        return _head(4, len(value)) + b"".join([encode(v) for v in value])
    raise CborError(f"cannot encode {type(value).__name__}")


def decode(data: bytes) -> Any:
    """Decode exactly one item; raise CborError on anything malformed."""
    value, offset = _decode(data, 0, 0)
    if offset != len(data):
        raise CborError("trailing bytes")
    return value


def _decode(data: bytes, offset: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise CborError("nested too deeply")
    if offset >= len(data):
        raise CborError("truncated")
    initial = data[offset]
    major, info = initial >> 5, initial & 0x1F
    offset += 1
    if major == 7:
        if info not in _SIMPLE:
            raise CborError("unsupported simple value or float")
        return _SIMPLE[info], offset
    if info < 24:
        arg = info
    elif info <= 27:
        end = offset + (1 << (info - 24))
        if end > len(data):
            raise CborError("truncated")
        arg = int.from_bytes(data[offset:end], "big")
        offset = end
    else:
        raise CborError("indefinite length or reserved value")
    if major == 0:
        return arg, offset
    if major == 1:
        return -1 - arg, offset
    if major == 2 or major == 3:
        end = offset + arg
        if end > len(data):
            raise CborError("truncated")
        if major == 2:
            return data[offset:end], end
        try:
            return data[offset:end].decode("utf-8"), end
        except UnicodeDecodeError as error:
            raise CborError("invalid UTF-8") from error
    if arg > len(data) - offset:  # each item takes at least one byte
        raise CborError("truncated")
    depth += 1
    if major == 4:
        items = []
        for _ in range(arg):
            item, offset = _decode(data, offset, depth)
            items.append(item)
        return items, offset
    if major == 5:
        result: dict[Any, Any] = {}
        for _ in range(arg):
            key, offset = _decode(data, offset, depth)
            if type(key) not in _KEY_TYPES or key in result:
                raise CborError("unsupported or duplicate map key")
            result[key], offset = _decode(data, offset, depth)
        return result, offset
    raise CborError("tags are not supported")
