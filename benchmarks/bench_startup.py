"""Start-up time of whole keyctl processes next to oathtool and ykman, measured in the same run.

    .venv/bin/python benchmarks/bench_startup.py [--runs 20] [--ykman PATH]

Runs ``keyctl --version``, ``keyctl totp code NAME`` (a throwaway entry in a throwaway keyring service,
inside a private D-Bus session with a throwaway gnome-keyring, as the tests do), ``oathtool --totp`` and
``ykman --version`` round-robin, each as a fresh process, and prints for each the median wall time, the
fastest run, the median CPU time (user + system; less sensitive to other load) and the ratio of medians to
``keyctl totp code``. The goal: ``keyctl totp code`` under 150 ms and at least 3x faster than
``ykman --version``. ykman is only a reference; without it that row is skipped with a note. Install it
apart from keyctl: python3 -m venv /tmp/ykman-venv && /tmp/ykman-venv/bin/pip install yubikey-manager
(Debian needs libpcsclite-dev to build its pyscard dependency).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSIDE = "KEYCTL_BENCH_INSIDE"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a throwaway, public value
GOAL_MS, GOAL_RATIO = 150.0, 3.0
YKMAN_HINT = "python3 -m venv /tmp/ykman-venv && /tmp/ykman-venv/bin/pip install yubikey-manager"


def run_ms(command: list[str]) -> tuple[float, float]:
    """(wall, CPU user+system) milliseconds of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.decode(errors='replace').strip()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def find_ykman(given: str | None) -> str | None:
    for candidate in (given, shutil.which("ykman"), "/tmp/ykman-venv/bin/ykman"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def measure(args: argparse.Namespace) -> None:
    keyctl = str(Path(sys.executable).with_name("keyctl"))
    if not Path(keyctl).exists():
        raise SystemExit(f"{keyctl} is missing: pip install -e . into this venv first")
    os.environ["KEYCTL_KEYRING_SERVICE"] = f"keyctl-bench-{uuid.uuid4().hex[:12]}"
    os.environ["KEYCTL_DATA_DIR"] = tempfile.mkdtemp(prefix="keyctl-bench-")
    # Like after `pip install`, which compiles bytecode: let every Python command cache it (in a
    # throwaway tree, not in the checkout), even where PYTHONDONTWRITEBYTECODE is set.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(os.environ["KEYCTL_DATA_DIR"], "pycache")
    add = subprocess.run(
        [keyctl, "totp", "add", "bench", "--secret"], input=SECRET + "\n", text=True, capture_output=True
    )
    if add.returncode != 0:
        raise SystemExit(f"could not add the benchmark entry: {add.stderr.strip()}")

    commands = {
        "keyctl totp code NAME": [keyctl, "totp", "code", "bench"],
        "keyctl --version": [keyctl, "--version"],
        "oathtool --totp": ["oathtool", "--totp", "-b", SECRET],
    }
    ykman = find_ykman(args.ykman)
    if ykman:
        commands["ykman --version"] = [ykman, "--version"]
    for command in commands.values():  # warm the page cache: "cold" means a new process, not a cold disk
        run_ms(command)
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # round-robin, so every command sees the same machine load
        for name, command in commands.items():
            elapsed, used = run_ms(command)
            wall[name].append(elapsed)
            cpu[name].append(used)

    medians = {name: statistics.median(values) for name, values in wall.items()}
    base = medians["keyctl totp code NAME"]
    load = os.getloadavg()[0]
    print(
        f"start-up, median of {args.runs} whole-process runs each (Python {sys.version.split()[0]}, "
        f"load average {load:.1f}):"
    )
    print(f"  {'command':<24}{'wall ms':>9}{'min ms':>8}{'CPU ms':>8}{'vs totp code':>14}")
    for name, median in medians.items():
        print(
            f"  {name:<24}{median:>9.0f}{min(wall[name]):>8.0f}{statistics.median(cpu[name]):>8.0f}"
            f"{median / base:>13.2f}x"
        )
    if not ykman:
        print(f"  ykman --version: skipped, ykman is not installed (install it apart: {YKMAN_HINT})")
    verdict = [f"keyctl totp code median {base:.0f} ms (goal < {GOAL_MS:.0f} ms)"]
    if ykman:
        ratio = medians["ykman --version"] / base
        verdict.append(f"{ratio:.1f}x faster than ykman --version (goal >= {GOAL_RATIO:.0f}x)")
    print("  " + "; ".join(verdict))
    shutil.rmtree(os.environ["KEYCTL_DATA_DIR"], ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command (median)")
    parser.add_argument("--ykman", help="path of a ykman executable (default: PATH, then /tmp/ykman-venv)")
    args = parser.parse_args()
    if os.environ.get(INSIDE):
        measure(args)
        return
    # Re-run inside a private D-Bus session with a throwaway, unlocked gnome-keyring (never the user's).
    harness = REPO / "scripts" / "with-secret-service.sh"
    command = ["dbus-run-session", "--", "bash", str(harness), sys.executable, __file__, *sys.argv[1:]]
    sys.exit(subprocess.run(command, env={**os.environ, INSIDE: "1"}, check=False).returncode)


if __name__ == "__main__":
    main()
