"""A throwaway Linux guest for tests that need a kernel feature this host lacks (/dev/uhid).

QEMU boots Debian's own kernel (linux-image-amd64) with software emulation (``-accel tcg``: this host's
/dev/kvm is a variant that hangs a stock guest kernel). A tiny busybox initramfs loads the virtio, 9p and
HID modules, mounts the host's root filesystem read-only over virtio-9p, adds tmpfs for /tmp and /run,
and runs one shell script from a writable shared directory inside a chroot of the host's root: the
guest runs this very checkout and its venv's Python, and writes its results back to that directory.

Usage as a script (for a look by hand): ``python tests/vm/qemu.py 'keyctl --version'``.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
QEMU = "qemu-system-x86_64"
MEMORY_MB = 1024
# Order matters: the 9p transport needs virtio, and virtio needs virtio_ring loaded before it.
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "hid",
    "hid-generic",
    "uhid",
)
INSTALL_HINT = (
    "bash scripts/install-system-deps.sh (Debian packages qemu-system-x86, linux-image-amd64, busybox-static)"
)

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do
  insmod /modules/$m.ko || echo "guest: insmod $m failed"
done
mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /newroot
for d in tmp run; do mount -t tmpfs -o mode=1777 $d /newroot/$d; done
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mkdir -p /newroot/tmp/vm
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 out /newroot/tmp/vm
ip link set lo up
hostname keyctl-vm
chroot /newroot /bin/sh /tmp/vm/run.sh > /newroot/tmp/vm/output.log 2>&1
echo $? > /newroot/tmp/vm/exit-code
sync
poweroff -f
"""


class GuestUnavailable(Exception):
    """QEMU, the kernel or busybox is missing: the guest cannot run on this machine at all."""


@dataclass(frozen=True)
class GuestResult:
    exit_code: int
    output: str  # the script's stdout and stderr
    console: str  # the guest kernel's console
    seconds: float
    shared: Path  # the shared directory, with whatever the script wrote there


def _kernel() -> tuple[Path, Path]:
    """The newest installed kernel image and its module directory."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    for image in reversed(kernels):
        modules = Path("/lib/modules") / image.name.removeprefix("vmlinuz-")
        if (modules / "modules.dep").exists():
            if not os.access(image, os.R_OK):
                raise GuestUnavailable(f"{image} is not readable by this user (Ubuntu makes it root-only)")
            return image, modules
    raise GuestUnavailable(f"no kernel image with modules under /boot and /lib/modules: {INSTALL_HINT}")


def unavailable_reason() -> str | None:
    """Why the guest cannot boot here, or None when it can."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return f"the QEMU guest runner needs x86-64 Linux, this is {sys.platform}/{os.uname().machine}"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed: {INSTALL_HINT}"
    if (
        not BUSYBOX.exists()
        or "dynamic"
        in subprocess.run(["file", "-b", str(BUSYBOX)], capture_output=True, text=True, check=False).stdout
    ):
        return f"{BUSYBOX} is missing or not static: {INSTALL_HINT}"
    try:
        _kernel()
    except GuestUnavailable as error:
        return str(error)
    return None


def _module_files(modules_dir: Path) -> dict[str, Path]:
    files = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        relative = line.split(":", 1)[0]
        name = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", Path(relative).name)
        files[name.replace("_", "-")] = modules_dir / relative
    return files


def _module_bytes(path: Path) -> bytes:
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".ko":
        return path.read_bytes()
    raise GuestUnavailable(f"cannot unpack {path} (only plain and .xz kernel modules are supported)")


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An initramfs archive (cpio "newc"): (path, mode, content) per entry, directories first."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += b"070701" + b"".join(f"{f:08x}".encode() for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_initramfs(target: Path) -> Path:
    _, modules_dir = _kernel()
    files = _module_files(modules_dir)
    present = [m for m in MODULES if m.replace("_", "-") in files]  # some are built in on other kernels
    directory = stat.S_IFDIR | 0o755
    executable = stat.S_IFREG | 0o755
    entries: list[tuple[str, int, bytes]] = [
        (d, directory, b"") for d in ("bin", "dev", "proc", "sys", "modules", "newroot")
    ]
    entries.append(("bin/busybox", executable, BUSYBOX.read_bytes()))
    entries.append(("init", executable, INIT.encode()))
    entries.append(("modules/order", stat.S_IFREG | 0o644, "\n".join(present).encode() + b"\n"))
    for module in present:
        entries.append(
            (f"modules/{module}.ko", stat.S_IFREG | 0o644, _module_bytes(files[module.replace("_", "-")]))
        )
    target.write_bytes(_cpio_newc(entries))
    return target


def run_guest(script: str, shared: Path, timeout_s: float = 600, cpus: int = 2) -> GuestResult:
    """Boot a guest, run ``script`` (sh) in it with ``shared`` mounted at /tmp/vm, power off."""
    reason = unavailable_reason()
    if reason:
        raise GuestUnavailable(reason)
    image, _ = _kernel()
    (shared / "run.sh").write_text(script)
    for stale in ("exit-code", "output.log"):
        (shared / stale).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="keyctl-vm-") as work:
        initramfs = build_initramfs(Path(work) / "initramfs.cpio")
        command = [
            QEMU,
            "-accel", "tcg,thread=multi",
            "-cpu", "max",
            "-m", str(MEMORY_MB),
            "-smp", str(cpus),
            "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", str(image),
            "-initrd", str(initramfs),
            "-append", "console=ttyS0 quiet panic=-1 rdinit=/init",
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=out,path={shared},security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=out,mount_tag=out",
        ]  # fmt: skip
        started = time.monotonic()
        try:
            proc = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as error:
            console = (error.stdout or b"").decode(errors="replace")
            raise AssertionError(
                f"the guest did not power off within {timeout_s:g} s:\n{console[-4000:]}"
            ) from None
        seconds = time.monotonic() - started
    console = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    exit_file = shared / "exit-code"
    if not exit_file.exists():
        raise AssertionError(
            f"the guest's script did not finish (QEMU exit {proc.returncode}):\n{console[-4000:]}"
        )
    output_file = shared / "output.log"
    return GuestResult(
        int(exit_file.read_text().strip()),
        output_file.read_text(errors="replace") if output_file.exists() else "",
        console,
        seconds,
        shared,
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="keyctl-vm-out-") as out:
        result = run_guest("\n".join(sys.argv[1:]) + "\n", Path(out))
        sys.stdout.write(result.output)
        sys.stderr.write(f"guest: exit {result.exit_code} after {result.seconds:.1f} s\n")
        sys.exit(result.exit_code)
