"""The stored state survives kill -9 and concurrent processes: it always loads, counters never repeat."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fido2.ctap2 import Ctap2

from keyctl.authenticator import new_state, store
from keyctl.hid import open_device

CDH = hashlib.sha256(b"durability").digest()

# A child process: assert in a loop through keyctl.hid.open_device, print each counter it received.
CHILD = """
import sys
from fido2.ctap2 import Ctap2
from keyctl.hid import open_device
ctap = Ctap2(open_device("virtual:ci"))
credential = {"type": "public-key", "id": bytes.fromhex(sys.argv[1])}
for _ in range(int(sys.argv[2])):
    got = ctap.get_assertion("example.com", bytes(32), [credential])
    print(got.auth_data.counter, flush=True)
"""


@pytest.fixture
def credential_id(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    store.create("ci", new_state())
    made = Ctap2(open_device("virtual:ci")).make_credential(
        CDH, {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}]
    )
    return bytes(made.auth_data.credential_data.credential_id).hex()


def _child(credential_id: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, credential_id, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_kill_9_mid_loop_leaves_a_loadable_store_and_growing_counters(credential_id: str) -> None:
    rng = random.Random(1234)
    stored_before = store.FileStore("ci").load().global_counter
    for _ in range(8):
        child = _child(credential_id, 100000)
        assert child.stdout is not None
        first = child.stdout.readline()  # it is up and asserting
        assert first.strip().isdigit(), child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        seen = [int(first)] + [int(line) for line in out.split() if line.isdigit()]
        state = store.FileStore("ci").load()  # always loads
        assert state.global_counter >= max(seen)  # persisted before the signature left the device
        assert min(seen) > stored_before  # never a value signed before
        stored_before = state.global_counter


def test_eight_processes_share_one_authenticator(credential_id: str, isolated_home: Path) -> None:
    children = [_child(credential_id, 10) for _ in range(8)]
    counters: list[int] = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        counters += [int(line) for line in out.split()]
    assert len(counters) == 80
    assert len(set(counters)) == 80  # the lock serialises them: no counter value is used twice
    assert store.FileStore("ci").load().global_counter == max(counters)
    leftovers = [p.name for p in (isolated_home / "data" / "virtual").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
