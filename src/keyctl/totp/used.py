"""TOTP time steps already sent to a server, per entry: a server refuses a code twice (and counts the
refusal toward its brute-force block), so a sign-in waits for the next step instead of sending one again.

``totp-used.json`` in the data dir maps a label (a vault entry's name, or ``$VAR`` for a secret given in
an environment variable) to the last step sent. Step numbers are not secrets. The file is read and
written under its own lock, held while waiting, so parallel sign-ins of one entry take turns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from keyctl.config import data_dir
from keyctl.errors import StateError
from keyctl.totp.model import Credential

USED_FILE = "totp-used.json"
LOCK_FILE = "totp-used.lock"
MAX_WAIT_S = 60.0  # longer than one 30 s step; a longer wait means a clock or file problem

Wait = Callable[[float], None]  # sleeps the given seconds (with a countdown on a terminal)


def _read() -> dict[str, int]:
    try:
        document = json.loads((data_dir() / USED_FILE).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}  # lost or damaged: at worst one code is refused by the server, as before
    if not isinstance(document, dict):
        return {}
    return {key: value for key, value in document.items() if isinstance(value, int)}


def _write(used: dict[str, int]) -> None:
    from keyctl.fileio import atomic_write

    atomic_write(data_dir() / USED_FILE, (json.dumps(used, indent=2) + "\n").encode(), mode=0o600)


def fresh_code(label: str, credential: Credential, wait: Wait) -> str:
    """A code of a time step not sent before under ``label``, recorded as sent before it is returned."""
    from keyctl.totp.vault import _locked, totp_code

    period = credential.entry.period
    with _locked(LOCK_FILE):
        used = _read()
        now = time.time()
        last = used.get(label)
        if last is not None and int(now // period) <= last:
            delay = (last + 1) * period - now
            if delay > MAX_WAIT_S:
                raise StateError(
                    f"the last TOTP code of {label} was sent for a step {delay:.0f} s in the future",
                    f"check the system clock, or remove {label} from {data_dir() / USED_FILE}",
                )
            wait(delay)
            now = max(time.time(), (last + 1) * period)
        code = totp_code(credential, now)
        used[label] = int(now // period)
        _write(used)
    return code.code
