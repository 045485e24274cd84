"""Seconds per enrolled user (`keyctl.enroll.batch.enroll_user`: enrollment session from the admin API,
getInfo, setPIN, registration ceremony) next to a bare registration ceremony measured in the same run
(`keyctl.webauthn.flows.register` on a session that is already signed in, the key already has a PIN).

    .venv/bin/python benchmarks/bench_enroll.py [--users 8] [--rounds 5]

The reference server runs in a thread on a free loopback port; every user gets a fresh virtual key
reached over CTAPHID-over-UDP (as a USB key would be over hidraw). Figures are medians over the rounds
of the mean time per user; the ratio is what the enrollment steps around the ceremony cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from keyctl.authenticator import VirtualAuthenticator, new_state
from keyctl.enroll import pins
from keyctl.enroll.batch import Batch, FixedKeys, enroll_user, open_enrollment
from keyctl.hid.udp import UdpServer, open_udp
from keyctl.server import start
from keyctl.webauthn import flows, profile

PIN = "482915"
PASSWORD = "benchmark passphrase 2026"


class Quiet:
    def say(self, message: str) -> None:
        pass

    def new_pin(self, user: str) -> str:
        return PIN

    def existing_pin(self, user: str) -> str | None:
        return PIN

    def generated_pin(self, user: str, pin: str) -> None:
        pass

    def touch(self) -> None:
        pass

    def pin(self) -> str | None:
        return PIN


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    the_profile = profile.load("keyctl")
    enroll_times: list[float] = []
    register_times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, start(Path(tmp) / "rp.sqlite3", rate_limit=10**6) as server:
        from keyctl.webauthn.session import Session

        for round_number in range(args.rounds):
            users = [f"u{round_number}-{i}@example.com" for i in range(args.users)]
            for user in users:
                server.create_user(user, PASSWORD)
            udps = [UdpServer(VirtualAuthenticator(), "127.0.0.1", 0).start() for _ in users]
            specs = [f"udp:{host}:{port}" for host, port in (u.address for u in udps)]
            batch = Batch(
                server=server.url,
                profile=the_profile,
                origin=server.url,
                admin_token=server.admin_token,
                keys=FixedKeys(specs),
                prompts=Quiet(),
                pin_policy=pins.Policy(),
            )
            started = time.perf_counter()
            for index, user in enumerate(users):
                record, error = enroll_user(batch, index, user)
                assert error is None, record
            enroll_times.append((time.perf_counter() - started) / len(users))
            for udp in udps:
                udp.stop()
            # Reference: the ceremony alone, for the same users on fresh keys that have a PIN already, on
            # sessions opened beforehand.
            udps = [
                UdpServer(VirtualAuthenticator(new_state(), pin_code=PIN), "127.0.0.1", 0).start()
                for _ in users
            ]
            sessions = []
            for user in users:
                session = Session(server.url, the_profile, server.url)
                open_enrollment(session, server.admin_token, user)
                sessions.append(session)
            started = time.perf_counter()
            for session, udp in zip(sessions, udps, strict=True):
                address = udp.address
                client = flows.Client(
                    origin=server.url,
                    authenticator="udp",
                    open_device=lambda address=address: open_udp(*address),  # type: ignore[misc]
                    interaction=Quiet(),
                )
                flows.register(session, client, flows.Request(name="second"))
            register_times.append((time.perf_counter() - started) / len(users))
            for session in sessions:
                session.close()
            for udp in udps:
                udp.stop()
    enroll_median = statistics.median(enroll_times)
    register_median = statistics.median(register_times)
    print(f"users per round: {args.users}, rounds: {args.rounds}")
    print(
        f"bare registration ceremony (signed-in session, key with PIN): {register_median * 1000:.1f} ms/user"
    )
    print(f"enroll_user (session + getInfo + setPIN + ceremony + checks): {enroll_median * 1000:.1f} ms/user")
    print(f"ratio enroll/register: {enroll_median / register_median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
