"""The keepalive interval (README: KEEPALIVE UPNEEDED every 100 ms while a touch is awaited), timed on
the raw CTAPHID reports a host receives, with the real clock."""

from __future__ import annotations

import hashlib
import itertools
import os
import statistics
import struct
import time

from fido2 import cbor

from keyctl.authenticator import Policy, PresenceMode, VirtualAuthenticator
from keyctl.authenticator import framing as f
from keyctl.hid.inprocess import InProcessConnection

UPNEEDED = 2
USER_ACTION_TIMEOUT = 0x2F


def test_keepalives_arrive_every_100_ms_while_a_touch_is_awaited() -> None:
    policy = Policy(presence=PresenceMode.TIMEOUT, presence_timeout_s=1.0)
    connection = InProcessConnection(VirtualAuthenticator(policy=policy).hid)

    def write(cid: int, cmd: int, data: bytes) -> None:
        for packet in f.packets(cid, cmd, data):
            connection.write_packet(packet.ljust(64, b"\0"))

    def read() -> tuple[int, bytes]:
        report = connection.read_packet()
        _, cmd, length = struct.unpack_from(">IBH", report)
        return cmd & 0x7F, report[7 : 7 + length]

    nonce = os.urandom(8)
    write(f.BROADCAST, f.INIT, nonce)
    cmd, data = read()
    assert (cmd, data[:8]) == (f.INIT, nonce)
    cid = struct.unpack_from(">I", data, 8)[0]
    request = {
        1: hashlib.sha256(b"client data").digest(),
        2: {"id": "example.com"},
        3: {"id": b"user"},
        4: [{"type": "public-key", "alg": -7}],
    }
    write(cid, f.CBOR, b"\x01" + cbor.encode(request))  # authenticatorMakeCredential
    arrivals = []
    while True:
        cmd, data = read()
        if cmd != f.KEEPALIVE:
            break
        assert data == bytes([UPNEEDED])
        arrivals.append(time.monotonic())
    assert (cmd, data[:1]) == (f.CBOR, bytes([USER_ACTION_TIMEOUT]))
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert 7 <= len(arrivals) <= 12, gaps  # one second of waiting
    assert 0.08 <= statistics.median(gaps) <= 0.15, gaps
