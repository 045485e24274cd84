"""Device-side CTAPHID at the report level, over the real transports (raw 64-byte reports)."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid.base import CtapHidConnection

from keyctl.authenticator import FakeClock, VirtualAuthenticator
from keyctl.authenticator import framing as f
from keyctl.hid.inprocess import InProcessConnection, connect
from keyctl.hid.udp import UdpConnection, UdpServer

ERR = CtapError.ERR  # CTAPHID's error codes, from python-fido2 rather than the module under test

BROADCAST = 0xFFFFFFFF


class RawHost:
    """A host that writes reports by hand, to do what well-behaved clients never do."""

    def __init__(self, connection: CtapHidConnection) -> None:
        self.connection = connection

    def write(self, report: bytes) -> None:
        self.connection.write_packet(report.ljust(64, b"\0"))

    def init_packet(self, cid: int, cmd: int, length: int, data: bytes = b"") -> None:
        self.write(struct.pack(">IBH", cid, 0x80 | cmd, length) + data)

    def cont_packet(self, cid: int, seq: int, data: bytes = b"") -> None:
        self.write(struct.pack(">IB", cid, seq) + data)

    def send(self, cid: int, cmd: int, data: bytes) -> None:
        for packet in f.packets(cid, cmd, data):
            self.write(packet)

    def receive(self) -> tuple[int, int, bytes]:
        report = self.connection.read_packet()
        cid, cmd, length = struct.unpack_from(">IBH", report)
        data = report[7 : 7 + length]
        seq = 0
        while len(data) < length:
            cont = self.connection.read_packet()
            assert struct.unpack_from(">I", cont)[0] == cid
            assert cont[4] == seq
            data += cont[5 : 5 + length - len(data)]
            seq += 1
        return cid, cmd & 0x7F, data

    def allocate(self) -> int:
        nonce = os.urandom(8)
        self.init_packet(BROADCAST, f.INIT, 8, nonce)
        cid, cmd, data = self.receive()
        assert (cid, cmd, data[:8]) == (BROADCAST, f.INIT, nonce)
        new_cid, version, _, _, _, capabilities = struct.unpack_from(">IBBBBB", data, 8)
        assert version == 2
        assert capabilities == 0x01 | 0x04  # WINK, CBOR; no NMSG: CTAP1/U2F MSG is there too
        return int(new_cid)

    def error(self) -> tuple[int, int]:
        cid, cmd, data = self.receive()
        assert cmd == f.ERROR, (cmd, data)
        return cid, data[0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["inprocess", "udp"])
def host(request: pytest.FixtureRequest, clock: FakeClock) -> object:
    authenticator = VirtualAuthenticator(clock=clock)
    if request.param == "inprocess":
        yield RawHost(InProcessConnection(authenticator.hid))
        return
    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    connection = UdpConnection(*server.address, timeout_s=5)
    yield RawHost(connection)
    connection.close()
    server.stop()


@pytest.fixture(params=["inprocess", "udp"])
def real_time_host(request: pytest.FixtureRequest) -> object:
    """A host on an authenticator with the system clock: the device's own timers run."""
    authenticator = VirtualAuthenticator()
    if request.param == "inprocess":
        yield RawHost(InProcessConnection(authenticator.hid))
        return
    server = UdpServer(authenticator, "127.0.0.1", 0).start()
    connection = UdpConnection(*server.address, timeout_s=5)
    yield RawHost(connection)
    connection.close()
    server.stop()


def second_host(host: RawHost) -> RawHost:
    """Another handle on the same device (another process opening the same key)."""
    connection = host.connection
    if isinstance(connection, InProcessConnection):
        return RawHost(InProcessConnection(connection._device))
    peer = connection._sock.getpeername()
    return RawHost(UdpConnection(peer[0], peer[1], timeout_s=5))


def test_init_allocates_distinct_channels(host: RawHost) -> None:
    channels = {host.allocate() for _ in range(5)}
    assert len(channels) == 5
    assert BROADCAST not in channels
    assert 0 not in channels


@pytest.mark.parametrize("size", [0, 1, 57, 58, 116, 1000, f.MAX_MESSAGE])
def test_ping_echoes_every_size(host: RawHost, size: int) -> None:
    cid = host.allocate()
    data = os.urandom(size)
    host.send(cid, f.PING, data)
    assert host.receive() == (cid, f.PING, data)


def test_length_and_channel_errors(host: RawHost) -> None:
    cid = host.allocate()
    host.init_packet(cid, f.PING, f.MAX_MESSAGE + 1)
    assert host.error() == (cid, ERR.INVALID_LENGTH)
    host.init_packet(BROADCAST, f.INIT, 7, b"1234567")
    assert host.error() == (BROADCAST, ERR.INVALID_LENGTH)
    host.init_packet(BROADCAST, f.PING, 1, b"x")
    assert host.error() == (BROADCAST, ERR.INVALID_CHANNEL)
    host.init_packet(0x12345678, f.PING, 1, b"x")
    assert host.error() == (0x12345678, ERR.INVALID_CHANNEL)
    host.init_packet(0, f.PING, 1, b"x")
    assert host.error() == (0, ERR.INVALID_CHANNEL)
    host.init_packet(cid, f.CBOR, 0)
    assert host.error() == (cid, ERR.INVALID_LENGTH)


def test_lock_and_unknown_commands_are_invalid(host: RawHost) -> None:
    cid = host.allocate()
    for command in (0x04, 0x3F, 0x55):
        host.send(cid, command, b"\x00\x01\x00\x00")
        assert host.error() == (cid, ERR.INVALID_COMMAND)


def test_wink_answers_empty(host: RawHost) -> None:
    cid = host.allocate()
    host.send(cid, f.WINK, b"")
    assert host.receive() == (cid, f.WINK, b"")


def test_wrong_sequence_is_invalid_seq(host: RawHost) -> None:
    cid = host.allocate()
    data = os.urandom(200)
    packets = f.packets(cid, f.PING, data)
    host.write(packets[0])
    host.write(packets[2])  # skips seq 0
    assert host.error() == (cid, ERR.INVALID_SEQ)
    host.send(cid, f.PING, data)  # and the channel works again
    assert host.receive() == (cid, f.PING, data)


def test_busy_while_another_channel_is_mid_message(host: RawHost, clock: FakeClock) -> None:
    other = second_host(host)
    a, b = host.allocate(), other.allocate()
    data = os.urandom(100)
    packets = f.packets(a, f.PING, data)
    host.write(packets[0])
    other.send(b, f.PING, b"hi")
    assert other.error() == (b, ERR.CHANNEL_BUSY)
    host.write(packets[1])
    assert host.receive() == (a, f.PING, data)
    other.send(b, f.PING, b"hi")
    assert other.receive() == (b, f.PING, b"hi")
    # a half-sent message is dropped (ERR_MSG_TIMEOUT) once it is stale, so it cannot lock others out
    host.write(packets[0])
    other.send(b, f.PING, b"hi")
    assert other.error() == (b, ERR.CHANNEL_BUSY)  # also: the device has seen the init packet
    clock.advance(f.TRANSACTION_TIMEOUT_S + 0.1)
    other.send(b, f.PING, b"again")
    assert host.error() == (a, ERR.TIMEOUT)
    assert other.receive() == (b, f.PING, b"again")


def test_a_new_message_on_a_channel_mid_message_is_invalid_seq(host: RawHost) -> None:
    cid = host.allocate()
    host.write(f.packets(cid, f.PING, os.urandom(100))[0])
    host.send(cid, f.PING, b"another")  # an initialization packet where a continuation belongs
    assert host.error() == (cid, ERR.INVALID_SEQ)
    host.send(cid, f.PING, b"then")  # the half-received message was dropped; the channel works
    assert host.receive() == (cid, f.PING, b"then")


def test_init_on_own_channel_resynchronises(host: RawHost) -> None:
    cid = host.allocate()
    host.write(f.packets(cid, f.PING, os.urandom(100))[0])
    nonce = os.urandom(8)
    host.init_packet(cid, f.INIT, 8, nonce)
    reply_cid, cmd, data = host.receive()
    assert (reply_cid, cmd, data[:8]) == (cid, f.INIT, nonce)
    assert struct.unpack_from(">I", data, 8)[0] == cid  # keeps its CID
    host.send(cid, f.PING, b"after resync")
    assert host.receive() == (cid, f.PING, b"after resync")


def test_spurious_continuation_and_idle_cancel_are_ignored(host: RawHost) -> None:
    cid = host.allocate()
    host.cont_packet(cid, 0, b"junk")
    host.init_packet(cid, f.CANCEL, 0)
    host.send(cid, f.PING, b"still here")
    assert host.receive() == (cid, f.PING, b"still here")


def test_cbor_over_raw_reports(host: RawHost) -> None:
    cid = host.allocate()
    host.send(cid, f.CBOR, b"\x04")
    reply_cid, cmd, data = host.receive()
    assert (reply_cid, cmd, data[0]) == (cid, f.CBOR, 0)
    assert b"FIDO_2_1" in data


def test_several_channels_at_once() -> None:
    """Four fido2 clients on one authenticator in parallel threads; CHANNEL_BUSY is retried by fido2."""
    authenticator = VirtualAuthenticator()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            ctap = Ctap2(connect(authenticator))
            for _ in range(15):
                assert ctap.get_info().versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]
        except BaseException as error:  # report to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert [thread.is_alive() for thread in threads] == [False] * 4, "a client still waits for its answer"
    assert errors == []


def test_half_sent_message_times_out_on_its_own(real_time_host: RawHost) -> None:
    """ERR_MSG_TIMEOUT arrives after the transaction timeout with no further report from the host."""
    host = real_time_host
    cid = host.allocate()
    # timed from before the write: on a loaded machine the write may return after the device's timer started
    started = time.monotonic()
    host.write(f.packets(cid, f.PING, os.urandom(100))[0])
    assert host.error() == (cid, ERR.TIMEOUT)
    waited = time.monotonic() - started
    assert f.TRANSACTION_TIMEOUT_S - 0.05 <= waited < f.TRANSACTION_TIMEOUT_S + 0.5
    host.send(cid, f.PING, b"free again")
    assert host.receive() == (cid, f.PING, b"free again")


def test_each_continuation_restarts_the_timeout(real_time_host: RawHost) -> None:
    host = real_time_host
    cid = host.allocate()
    data = os.urandom(57 + 59 * 3)
    packets = f.packets(cid, f.PING, data)
    for packet in packets[:-1]:
        host.write(packet)
        time.sleep(f.TRANSACTION_TIMEOUT_S * 0.6)  # longer in total than one timeout
    host.write(packets[-1])
    assert host.receive() == (cid, f.PING, data)


def test_init_on_a_channel_never_allocated_adopts_it(host: RawHost) -> None:
    """CTAP 2.1 §11.2.9.1.3 describes INIT on an allocated CID (resynchronise) and on the broadcast
    CID (allocate); for any other CID keyctl resynchronises it like an allocated one, as Solo does."""
    nonce = os.urandom(8)
    host.init_packet(0x11223344, f.INIT, 8, nonce)
    reply_cid, cmd, data = host.receive()
    assert (reply_cid, cmd, data[:8]) == (0x11223344, f.INIT, nonce)
    assert struct.unpack_from(">I", data, 8)[0] == 0x11223344
    host.send(0x11223344, f.PING, b"adopted")
    assert host.receive() == (0x11223344, f.PING, b"adopted")
    host.init_packet(0, f.INIT, 8, nonce)  # CID 0 stays reserved
    assert host.error() == (0, ERR.INVALID_CHANNEL)


def test_allocation_skips_an_adopted_channel(host: RawHost) -> None:
    first = host.allocate()
    host.init_packet(first + 1, f.INIT, 8, os.urandom(8))
    assert host.receive()[1] == f.INIT
    assert host.allocate() == first + 2


def test_init_from_another_channel_during_a_half_sent_message(real_time_host: RawHost) -> None:
    """The peer suite's ping-abort-from-different-CID: INIT is answered at once, the stale message later
    times out on its own channel."""
    host = real_time_host
    cid = host.allocate()
    host.write(f.packets(cid, f.PING, os.urandom(100))[0])
    nonce = os.urandom(8)
    host.init_packet(cid ^ 0x01000000, f.INIT, 8, nonce)
    reply_cid, cmd, data = host.receive()
    assert (reply_cid, cmd, data[:8]) == (cid ^ 0x01000000, f.INIT, nonce)
    assert host.error() == (cid, ERR.TIMEOUT)
