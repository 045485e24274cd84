"""The udev rules that let a logged-in user open FIDO keys through /dev/hidraw*, shipped inside the
package (``keyctl doctor --udev-rules`` prints them, ``--install-udev-rules`` installs them): a
``pip install`` has no ``scripts/`` directory. ``scripts/udev/`` holds the same file for packagers."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

from keyctl.errors import StateError

RULES_NAME = "70-keyctl-fido.rules"
RULES_DIR = Path("/etc/udev/rules.d")
INSTALL = (
    "sudo keyctl doctor --install-udev-rules (or: keyctl doctor --udev-rules | sudo tee "
    f"{RULES_DIR}/{RULES_NAME}), then re-insert the key"
)


def rules() -> str:
    return (resources.files(__package__) / "udev" / RULES_NAME).read_text(encoding="utf-8")


def install(directory: Path = RULES_DIR) -> Path:
    """Write the rules (atomically, mode 0644) and ask udev to reload them and re-run them on devices."""
    from keyctl.fileio import atomic_write

    target = directory / RULES_NAME
    try:
        atomic_write(target, rules().encode(), mode=0o644)
    except OSError as error:
        raise StateError(
            f"cannot write {target}: {error.strerror}",
            f"run it as root: {INSTALL}",
        ) from None
    udevadm = shutil.which("udevadm")
    if udevadm is not None and directory == RULES_DIR:
        subprocess.run([udevadm, "control", "--reload"], check=False, capture_output=True)
        subprocess.run([udevadm, "trigger", "--subsystem-match=hidraw"], check=False, capture_output=True)
    return target
