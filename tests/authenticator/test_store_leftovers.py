"""A save killed mid-write leaves ``.NAME.state.XXXXXXXX.tmp``, a full sealed copy of the state (keys,
counter): the next load of that authenticator and ``keyctl virtual remove`` delete it, and nothing else."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keyctl.authenticator import new_state, store
from tests.conftest import run_keyctl

# A child process that saves the state and is stopped between writing the temp file and renaming it.
SAVE_AND_STALL = """
import os, sys, time
from keyctl.authenticator import new_state, store
def stall(src, dst):
    print("temp written", flush=True)
    time.sleep(60)
os.replace = stall
if sys.argv[2] == "create":
    store.create(sys.argv[1], new_state())
else:
    with store.FileStore(sys.argv[1]).transaction() as state:
        state.global_counter += 1
"""


@pytest.fixture(autouse=True)
def ci_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())


def temps(name: str) -> list[Path]:
    mkstemp_name = re.compile(rf"\.{re.escape(name)}\.state\.[a-z0-9_]{{8}}\.tmp")
    return sorted(p for p in store.virtual_dir().iterdir() if mkstemp_name.fullmatch(p.name))


def kill_mid_save(name: str, what: str = "save") -> Path:
    child = subprocess.Popen(
        [sys.executable, "-c", SAVE_AND_STALL, name, what],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "temp written\n"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    (left,) = temps(name)
    assert left.stat().st_size > 100  # the whole sealed state
    return left


def test_the_next_load_deletes_a_killed_save_s_temp_file() -> None:
    store.create("ci", new_state())
    store.create("ci.state.x", new_state())  # its temp file matches ".ci.state.*.tmp": it must survive
    others = kill_mid_save("ci.state.x")
    kill_mid_save("ci")
    counter = store.FileStore("ci").load().global_counter
    assert temps("ci") == []
    assert others.exists()
    assert counter == 0  # the killed save never landed: the old state is the state


def test_delete_removes_the_temp_files_too() -> None:
    store.create("ci", new_state())
    kill_mid_save("ci")
    removed = run_keyctl(["virtual", "delete", "ci", "--yes"])
    assert removed.exit_code == 0, removed.stderr
    assert list(store.virtual_dir().iterdir()) == []


def test_creating_the_name_again_removes_a_killed_create_s_temp_file() -> None:
    kill_mid_save("ci", "create")
    assert not store.exists("ci")  # the first save never landed: nothing to load or delete yet
    store.create("ci", new_state())
    assert temps("ci") == []
    assert store.FileStore("ci").load().global_counter == 0
