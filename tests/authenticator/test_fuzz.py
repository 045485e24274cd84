"""Property-based tests of CTAPHID split/reassembly, and fuzzing of reports and CBOR requests."""

from __future__ import annotations

import hashlib
import os
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyctl.authenticator import FakeClock, Policy, PresenceMode, VirtualAuthenticator
from keyctl.authenticator import cbor as device_cbor
from keyctl.authenticator import framing as f
from keyctl.authenticator.status import Status
from keyctl.hid.inprocess import InProcessConnection
from tests.authenticator.test_framing import RawHost

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reassemble(reports: list[bytes]) -> tuple[int, int, bytes]:
    cid, cmd, length = struct.unpack_from(">IBH", reports[0])
    data = reports[0][7 : 7 + length]
    for seq, report in enumerate(reports[1:]):
        assert struct.unpack_from(">IB", report) == (cid, seq)
        data += report[5 : 5 + length - len(data)]
    return cid, cmd & 0x7F, data


@settings(max_examples=80, deadline=None)
@given(
    cid=st.integers(1, 0xFFFFFFFE),
    cmd=st.sampled_from([f.PING, f.CBOR, f.WINK]),
    data=st.binary(max_size=f.MAX_MESSAGE),
)
def test_split_then_reassemble_is_identity(cid: int, cmd: int, data: bytes) -> None:
    reports = f.packets(cid, cmd, data)
    assert all(len(r) == 64 for r in reports)
    extra = max(0, len(data) - f.INIT_DATA)
    assert len(reports) == 1 + -(-extra // f.CONT_DATA)
    assert reassemble(reports) == (cid, cmd, data)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=2000), interleave=st.lists(st.booleans(), max_size=40))
def test_device_reassembles_while_other_hosts_init(data: bytes, interleave: list[bool]) -> None:
    """INITs from another host between our packets are answered without disturbing our message."""
    authenticator = VirtualAuthenticator()
    host = RawHost(InProcessConnection(authenticator.hid))
    other = RawHost(InProcessConnection(authenticator.hid))
    cid = host.allocate()
    for index, packet in enumerate(f.packets(cid, f.PING, data)):
        if index < len(interleave) and interleave[index]:
            other.allocate()
        host.write(packet)
    assert host.receive() == (cid, f.PING, data)


def _report_strategy(cids: list[int]) -> st.SearchStrategy[bytes]:
    cid = st.sampled_from([*cids, 0xFFFFFFFF, 0]) | st.integers(0, 0xFFFFFFFF)
    return st.builds(
        lambda c, rest: struct.pack(">I", c) + rest,
        cid,
        st.binary(min_size=60, max_size=60),
    )


@pytest.mark.parametrize("presence", [PresenceMode.AUTO, PresenceMode.TIMEOUT])
@FUZZ
@given(data=st.data())
def test_random_reports_never_crash_or_wedge_the_device(presence: PresenceMode, data: st.DataObject) -> None:
    """Junk reports, including CBOR commands that wait for a touch on the worker thread (timeout policy)."""
    clock = FakeClock()
    policy = Policy(presence=presence, presence_timeout_s=0.3)
    authenticator = VirtualAuthenticator(policy=policy, clock=clock)
    host = RawHost(InProcessConnection(authenticator.hid))
    cids = [host.allocate() for _ in range(2)]
    sent: list[bytes] = []
    replies: list[bytes] = []
    reports = data.draw(st.lists(_report_strategy(cids) | st.binary(max_size=80), max_size=30))
    started = time.monotonic()
    for report in reports:
        authenticator.hid.receive(report, replies.append)  # must not raise
        sent.append(report)
    assert time.monotonic() - started < 30
    assert all(len(r) == 64 for r in replies)
    # whatever state the junk left, the device serves a fresh channel once stale messages expire
    clock.advance(f.TRANSACTION_TIMEOUT_S + 1)
    fresh = RawHost(InProcessConnection(authenticator.hid))
    cid = fresh.allocate()
    for _ in range(200):  # a command the junk started may still be running: BUSY until it ends
        fresh.send(cid, f.PING, b"alive")
        _, cmd, payload = fresh.receive()
        if cmd == f.PING:
            break
        assert (cmd, payload[:1]) == (f.ERROR, bytes([0x06]))  # ERR_CHANNEL_BUSY
        time.sleep(0.02)
    assert (cmd, payload) == (f.PING, b"alive")


CDH = hashlib.sha256(b"fuzz").digest()
VALID_REQUESTS = [
    bytes([0x04]),
    bytes([0x01])
    + device_cbor.encode(
        {
            1: CDH,
            2: {"id": "example.com", "name": "Example"},
            3: {"id": b"user", "name": "u"},
            4: [{"type": "public-key", "alg": -7}],
            6: {"credProtect": 2, "hmac-secret": True, "credBlob": b"blob"},
            7: {"rk": True, "uv": True},
        }
    ),
    bytes([0x02]) + device_cbor.encode({1: "example.com", 2: CDH, 5: {"up": False}}),
    bytes([0x06]) + device_cbor.encode({1: 2, 2: 2}),
    bytes([0x06]) + device_cbor.encode({1: 1, 2: 5, 3: {1: 2, 3: -25, -1: 1, -2: b"x" * 32, -3: b"y" * 32}}),
    bytes([0x0A]) + device_cbor.encode({1: 1, 3: 2, 4: b"z" * 32}),
    bytes([0x0D]) + device_cbor.encode({1: 3, 2: {1: 8}}),
    bytes([0x08]),
]
STATUSES = {int(s) for s in Status} - {Status.OTHER}  # OTHER would mean an internal error (a bug)

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.integers(-5, 12) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    base=st.sampled_from(VALID_REQUESTS),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, 400),
)
def test_mutated_requests_get_a_status_never_an_exception(
    base: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    message = bytearray(base)
    for position, mask in flips:
        if message:
            message[position % len(message)] ^= mask
    response = AUTHENTICATOR.handle(bytes(message[: max(1, cut)]))
    assert response[0] in STATUSES


@FUZZ
@given(
    command=st.sampled_from([0x01, 0x02, 0x06, 0x07, 0x08, 0x0A, 0x0B, 0x0D, 0x41, 0x99]), value=cbor_values
)
def test_random_cbor_gets_a_status_never_an_exception(command: int, value: object) -> None:
    try:
        payload = device_cbor.encode(value)
    except device_cbor.CborError:
        payload = os.urandom(8)
    response = AUTHENTICATOR.handle(bytes([command]) + payload)
    assert response[0] in STATUSES


AUTHENTICATOR = VirtualAuthenticator()
