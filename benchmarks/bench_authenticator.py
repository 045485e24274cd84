"""Virtual authenticator throughput next to the bare ECDSA P-256 sign rate, measured in the same run.

    .venv/bin/python benchmarks/bench_authenticator.py [--seconds 1.0] [--rounds 5]

Prints the median rate of each operation over the rounds and its ratio to the bare sign rate. The
getAssertion round trip is measured twice: ``Ctap2.send_cbor`` (fido2 encodes the request, frames it
over CTAPHID, decodes the CBOR answer) and ``Ctap2.get_assertion`` (the same plus fido2 building its
AssertionResponse dataclasses, which costs fido2 more than the whole round trip). A last line measures
fido2's client side alone: ``Ctap2.send_cbor`` against a connection that answers instantly with a
recorded response, the floor any authenticator behind fido2 adds its own time to. U2F authenticate goes
through fido2's ``Ctap1`` (an APDU over CTAPHID_MSG) with a key handle from U2F_REGISTER.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection

from keyctl.authenticator import VirtualAuthenticator
from keyctl.authenticator.framing import (
    BROADCAST,
    CAPABILITY_CBOR,
    CAPABILITY_WINK,
    CBOR,
    INIT,
    TYPE_INIT,
    packets,
)
from keyctl.hid.inprocess import connect
from keyctl.hid.udp import UdpServer, open_udp

CDH = hashlib.sha256(b"benchmark").digest()
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


class RecordedAnswer(CtapHidConnection):
    """Opens channel 1 like a device, then answers each CBOR request at once with the response recorded
    for its command byte."""

    CHANNEL = 1
    CAPABILITIES = CAPABILITY_WINK | CAPABILITY_CBOR

    def __init__(self, responses: dict[int, bytes]) -> None:
        self._responses = responses
        self._pending: list[bytes] = []

    def write_packet(self, data: bytes) -> None:
        if data[4] == TYPE_INIT | INIT:
            answer = data[7:15] + self.CHANNEL.to_bytes(4, "big") + bytes([2, 1, 0, 0, self.CAPABILITIES])
            self._pending = packets(BROADCAST, INIT, answer)[::-1]
        elif data[4] == TYPE_INIT | CBOR:
            self._pending = packets(self.CHANNEL, CBOR, self._responses[data[7]])[::-1]

    def read_packet(self) -> bytes:
        return self._pending.pop()

    def close(self) -> None:
        return None


def rate(operation: Callable[[], object], seconds: float) -> float:
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(20):
            operation()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of one measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per operation (median)")
    args = parser.parse_args()

    key = ec.generate_private_key(ec.SECP256R1())
    message = bytes(37) + CDH

    authenticator = VirtualAuthenticator()
    local = Ctap2(connect(authenticator))
    server = UdpServer(VirtualAuthenticator(), "127.0.0.1", 0).start()
    remote = Ctap2(open_udp(*server.address))

    def assertion_args(ctap: Ctap2) -> dict[int, object]:
        made = ctap.make_credential(CDH, RP, {"id": b"bench"}, ES256)
        credential = {"type": "public-key", "id": made.auth_data.credential_data.credential_id}
        return {1: "example.com", 2: CDH, 3: [credential]}

    local_args, remote_args = assertion_args(local), assertion_args(remote)
    local_u2f, remote_u2f = Ctap1(local.device), Ctap1(remote.device)
    app = hashlib.sha256(b"example.com").digest()
    local_handle = local_u2f.register(CDH, app).key_handle
    remote_handle = remote_u2f.register(CDH, app).key_handle
    allow = local_args[3]
    request = bytes([Ctap2.CMD.GET_ASSERTION]) + cbor.encode(local_args)
    recorded = RecordedAnswer(
        {
            Ctap2.CMD.GET_INFO: authenticator.handle(bytes([Ctap2.CMD.GET_INFO])),
            Ctap2.CMD.GET_ASSERTION: authenticator.handle(request),
        }
    )
    instant = Ctap2(CtapHidDevice(local.device.descriptor, recorded))
    operations: dict[str, Callable[[], object]] = {
        "bare ECDSA P-256 sign (cryptography)": lambda: key.sign(message, ec.ECDSA(hashes.SHA256())),
        "getAssertion, authenticator core only (no CTAPHID, no fido2)": lambda: authenticator.handle(request),
        "getAssertion in-process, Ctap2.send_cbor": lambda: local.send_cbor(
            Ctap2.CMD.GET_ASSERTION, local_args
        ),
        "getAssertion in-process, Ctap2.get_assertion": lambda: local.get_assertion(
            "example.com", CDH, allow
        ),
        "getAssertion over UDP, Ctap2.send_cbor": lambda: remote.send_cbor(
            Ctap2.CMD.GET_ASSERTION, remote_args
        ),
        "U2F authenticate in-process, Ctap1.authenticate": lambda: local_u2f.authenticate(
            CDH, app, local_handle
        ),
        "U2F authenticate over UDP, Ctap1.authenticate": lambda: remote_u2f.authenticate(
            CDH, app, remote_handle
        ),
        "makeCredential in-process, Ctap2.make_credential": lambda: local.make_credential(
            CDH, RP, {"id": b"bench"}, ES256
        ),
        "fido2 client alone: Ctap2.send_cbor, instant recorded answer": lambda: instant.send_cbor(
            Ctap2.CMD.GET_ASSERTION, local_args
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(args.rounds):  # interleaved, so background load hits every operation alike
        for name, operation in operations.items():
            results[name].append(rate(operation, args.seconds))
    server.stop()

    reference = statistics.median(results["bare ECDSA P-256 sign (cryptography)"])
    width = max(len(name) for name in results)
    print(f"{'operation':<{width}}  {'median/s':>9}  {'ratio to sign':>13}")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"{name:<{width}}  {median:>9.0f}  {median / reference:>13.3f}")


if __name__ == "__main__":
    main()
