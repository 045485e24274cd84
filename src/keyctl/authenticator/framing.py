"""Device-side CTAPHID (CTAP 2.1 §11.2): 64-byte reports in, 64-byte reports out.

Transports call ``HidDevice.receive(report, reply)`` with each output report of the host and a function
that delivers the device's input reports back to that host. When the presence policy can make a
command wait for a person, CBOR requests run on a worker thread so that the device keeps answering INIT,
CANCEL and CHANNEL_BUSY meanwhile; otherwise they run at once in the transport's thread. A watchdog
thread answers ERR_MSG_TIMEOUT for a message left half-sent, without waiting for the host's next report.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from keyctl.authenticator import u2f
from keyctl.authenticator.device import Device
from keyctl.authenticator.dispatch import dispatch
from keyctl.authenticator.ports import Clock, KeepaliveStatus, SystemClock
from keyctl.logs import TRAFFIC

log = logging.getLogger(__name__)

REPORT_SIZE = 64
INIT_DATA = REPORT_SIZE - 7
CONT_DATA = REPORT_SIZE - 5
MAX_MESSAGE = INIT_DATA + 128 * CONT_DATA  # 7609 bytes
BROADCAST = 0xFFFFFFFF
TYPE_INIT = 0x80
PROTOCOL_VERSION = 2
DEVICE_VERSION = (1, 0, 0)
MAX_CHANNELS = 256
TRANSACTION_TIMEOUT_S = 0.5  # a half-sent message older than this no longer blocks other channels
WORKER_IDLE_S = 1.0

# CTAPHID commands
PING = 0x01
MSG = 0x03
INIT = 0x06
WINK = 0x08
CBOR = 0x10
CANCEL = 0x11
KEEPALIVE = 0x3B
ERROR = 0x3F

# capability flags
CAPABILITY_WINK = 0x01
CAPABILITY_CBOR = 0x04
CAPABILITY_NMSG = 0x08  # no CTAP1/U2F MSG

# CTAPHID error codes
ERR_INVALID_CMD = 0x01
ERR_INVALID_PAR = 0x02
ERR_INVALID_LEN = 0x03
ERR_INVALID_SEQ = 0x04
ERR_MSG_TIMEOUT = 0x05
ERR_CHANNEL_BUSY = 0x06
ERR_INVALID_CHANNEL = 0x0B

Reply = Callable[[bytes], None]

_CID = struct.Struct(">I")
_INIT_HEADER = struct.Struct(">IBH")
_CONT_HEADER = struct.Struct(">IB")
_LENGTH = struct.Struct(">H")


def packets(cid: int, cmd: int, data: bytes) -> list[bytes]:
    """Split one message into an init packet and continuation packets, each padded to 64 bytes."""
    out = [_INIT_HEADER.pack(cid, TYPE_INIT | cmd, len(data)) + data[:INIT_DATA]]
    for seq, start in enumerate(range(INIT_DATA, len(data), CONT_DATA)):
        out.append(_CONT_HEADER.pack(cid, seq) + data[start : start + CONT_DATA])
    out[-1] = out[-1].ljust(REPORT_SIZE, b"\0")  # only the last packet can be short
    return out


@dataclass(slots=True)
class _Transaction:
    """A message being received or a CBOR command being processed on one channel."""

    cid: int
    cmd: int
    length: int
    reply: Reply
    last_packet_at: float
    data: bytearray = field(default_factory=bytearray)
    next_seq: int = 0
    processing: bool = False
    cancelled: bool = False  # CANCEL arrived: the command ends with KEEPALIVE_CANCEL
    abandoned: bool = False  # INIT resynchronised the channel: nothing more is sent


# What handling a report leads to: a message to send (cid, cmd, data), a command to run, or nothing.
_Answer = tuple[int, int, bytes] | _Transaction | None


class _TransactionLink:
    """The running command's view of its channel."""

    def __init__(self, device: HidDevice, transaction: _Transaction) -> None:
        self._device = device
        self._transaction = transaction

    def keepalive(self, status: KeepaliveStatus) -> None:
        self._device.send(self._transaction, KEEPALIVE, bytes([status]))

    def cancelled(self) -> bool:
        return self._transaction.cancelled or self._transaction.abandoned


class HidDevice:
    """One virtual HID device: channel allocation, reassembly, and the command worker."""

    def __init__(self, authenticator: Device, clock: Clock | None = None) -> None:
        self.authenticator = authenticator
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._channels: dict[int, None] = {}  # allocated CIDs, oldest first
        self._next_cid = 1
        self._current: _Transaction | None = None
        self._jobs: queue.SimpleQueue[_Transaction] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._wake = threading.Condition(self._lock)  # a half-sent message for the watchdog
        self._watchdog: threading.Thread | None = None
        self._watchdog_idle = False
        protocols = authenticator.protocols
        self._commands = {cmd for cmd, on in ((CBOR, protocols.ctap2), (MSG, protocols.u2f)) if on}
        self.capabilities = CAPABILITY_WINK | (CAPABILITY_CBOR if protocols.ctap2 else 0)
        self.capabilities |= 0 if protocols.u2f else CAPABILITY_NMSG

    def send(self, transaction: _Transaction, cmd: int, data: bytes) -> None:
        if transaction.abandoned:
            return
        self._send(transaction.reply, transaction.cid, cmd, data)

    def _send(self, reply: Reply, cid: int, cmd: int, data: bytes) -> None:
        reports = packets(cid, cmd, data)
        if log.isEnabledFor(TRAFFIC):
            for report in reports:
                log.log(TRAFFIC, "device sends %s", report.hex())
        with self._send_lock:
            for report in reports:
                reply(report)

    def _error(self, reply: Reply, cid: int, code: int) -> None:
        self._send(reply, cid, ERROR, bytes([code]))

    def receive(self, report: bytes, reply: Reply) -> None:
        """Handle one report from a host; answers go through ``reply``. Never raises on bad input."""
        if log.isEnabledFor(TRAFFIC):
            log.log(TRAFFIC, "device receives %s", report.hex())
        if len(report) != REPORT_SIZE:
            log.debug("dropped a %d-byte report", len(report))
            return
        cid = _CID.unpack_from(report)[0]
        with self._lock:
            answer = self._receive(report, cid, reply)
        if isinstance(answer, _Transaction):
            self._run(answer)
        elif answer is not None:
            self._send(reply, *answer)

    def _receive(self, report: bytes, cid: int, reply: Reply) -> _Answer:
        """Runs under the lock; returns a message to send (cid, cmd, data), if any."""
        now = self._clock.monotonic()
        current = self._current
        if (
            current is not None
            and not current.processing
            and now - current.last_packet_at > TRANSACTION_TIMEOUT_S
        ):
            self._current = None
            self._error(current.reply, current.cid, ERR_MSG_TIMEOUT)
            current = None
        if not report[4] & TYPE_INIT:
            if current is not None and current.cid == cid and not current.processing:
                return self._continuation(current, report, now)
            return None  # spurious continuation packets are ignored
        cmd = report[4] & 0x7F
        length = _LENGTH.unpack_from(report, 5)[0]
        if cmd == INIT:
            return self._init(cid, length, report, reply)
        if cid not in self._channels:
            return cid, ERROR, bytes([ERR_INVALID_CHANNEL])
        if cmd == CANCEL:
            if current is not None and current.cid == cid and current.processing:
                current.cancelled = True
            return None
        if current is not None:
            if current.cid == cid and not current.processing:
                self._current = None
                return cid, ERROR, bytes([ERR_INVALID_SEQ])
            return cid, ERROR, bytes([ERR_CHANNEL_BUSY])
        if length > MAX_MESSAGE:
            return cid, ERROR, bytes([ERR_INVALID_LEN])
        transaction = _Transaction(cid, cmd, length, reply, now)
        transaction.data += report[7 : 7 + length]  # a report holds at most INIT_DATA of it
        return self._maybe_complete(transaction)

    def _continuation(self, current: _Transaction, report: bytes, now: float) -> _Answer:
        if report[4] != current.next_seq:
            self._current = None
            return current.cid, ERROR, bytes([ERR_INVALID_SEQ])
        current.next_seq += 1
        current.last_packet_at = now
        current.data += report[5 : 5 + current.length - len(current.data)]
        return self._maybe_complete(current)

    def _init(self, cid: int, length: int, report: bytes, reply: Reply) -> _Answer:
        if length != 8:
            return cid, ERROR, bytes([ERR_INVALID_LEN])
        nonce = report[7:15]
        if cid == 0:  # reserved (CTAP 2.1 §11.2.3)
            return cid, ERROR, bytes([ERR_INVALID_CHANNEL])
        if cid == BROADCAST:
            new_cid = self._allocate()
        else:
            # Resynchronise: abort whatever this channel was doing. A CID this device never allocated
            # (or forgot) is adopted, as Solo does: the spec only describes INIT on an allocated CID, and
            # answering it keeps a host that resynchronises a remembered channel working (docs/virtual.md).
            new_cid = cid
            self._remember(cid)
            current = self._current
            if current is not None and current.cid == cid:
                current.abandoned = True
                self._current = None
        payload = nonce + struct.pack(
            ">IBBBBB", new_cid, PROTOCOL_VERSION, *DEVICE_VERSION, self.capabilities
        )
        return cid, INIT, payload

    def _allocate(self) -> int:
        cid = self._next_cid
        while cid in self._channels:  # adopted by a host's INIT
            cid = cid % (BROADCAST - 1) + 1
        self._next_cid = cid % (BROADCAST - 1) + 1
        self._remember(cid)
        return cid

    def _remember(self, cid: int) -> None:
        self._channels.pop(cid, None)
        self._channels[cid] = None  # newest last
        if len(self._channels) > MAX_CHANNELS:
            del self._channels[next(iter(self._channels))]

    def _maybe_complete(self, transaction: _Transaction) -> _Answer:
        if len(transaction.data) < transaction.length:
            self._current = transaction
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="ctaphid-watchdog", daemon=True)
                self._watchdog.start()
            elif self._watchdog_idle:
                self._wake.notify()
            return None
        self._current = None
        cid, cmd, data = transaction.cid, transaction.cmd, bytes(transaction.data)
        if cmd == PING:
            return cid, PING, data
        if cmd == WINK:
            self.authenticator.winks += 1
            return cid, WINK, b""
        if cmd not in self._commands:  # CBOR or MSG, as far as this key speaks CTAP2 or U2F
            return cid, ERROR, bytes([ERR_INVALID_CMD])
        if not data and cmd == CBOR:
            return cid, ERROR, bytes([ERR_INVALID_LEN])
        transaction.processing = True
        self._current = transaction
        if not self.authenticator.may_wait:
            return transaction  # nothing can wait for a person: run it at once, in the caller's thread
        self._jobs.put(transaction)
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="ctaphid-worker", daemon=True)
            self._worker.start()
        return None

    def _run(self, transaction: _Transaction) -> None:
        link = _TransactionLink(self, transaction)
        if transaction.cmd == CBOR:
            response = dispatch(self.authenticator, bytes(transaction.data), link)
        else:
            response = u2f.handle(self.authenticator, bytes(transaction.data), link)
        with self._lock:
            if self._current is transaction:
                self._current = None
        self.send(transaction, transaction.cmd, response)

    def _work(self) -> None:
        while True:
            try:
                transaction = self._jobs.get(timeout=WORKER_IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._worker = None
                        return
                continue
            self._run(transaction)

    def _watch(self) -> None:
        """ERR_MSG_TIMEOUT for a message left half-sent (CTAP 2.1 §11.2.5.2 transaction timeout)."""
        with self._lock:
            while True:
                current = self._current
                if current is not None and not current.processing:
                    left = current.last_packet_at + TRANSACTION_TIMEOUT_S - self._clock.monotonic()
                    if left < 0:
                        self._current = None
                        self._error(current.reply, current.cid, ERR_MSG_TIMEOUT)
                    else:
                        self._wake.wait(left + 0.005)
                    continue
                self._watchdog_idle = True
                woken = self._wake.wait(WORKER_IDLE_S)
                self._watchdog_idle = False
                if not woken and (self._current is None or self._current.processing):
                    self._watchdog = None
                    return
