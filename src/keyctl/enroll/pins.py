"""The PIN policy of an enrollment batch (a TOML file): where new PINs come from and how long they are.

```toml
[pin]
source = "prompt"      # "prompt" (asked twice on a terminal) or "generate" (random digits, shown once)
min_length = 6         # keyctl's own minimum; the key's minPINLength applies as well
generated_length = 8   # length of generated PINs
```
"""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from keyctl.errors import InvalidInput, PinPolicy

MIN_PIN = 4  # CTAP's own floor
MAX_PIN = 63  # bytes in UTF-8


@dataclass(frozen=True)
class Policy:
    source: Literal["prompt", "generate"] = "prompt"
    min_length: int = 6
    generated_length: int = 8

    def check(self, pin: str) -> None:
        """Refuse a new PIN this policy does not allow (the key checks its own minimum afterwards)."""
        if len(pin) < self.min_length:
            raise PinPolicy(
                f"the new PIN is too short: the PIN policy needs at least {self.min_length} characters",
                "choose a longer PIN",
            )
        if len(pin.encode()) > MAX_PIN:
            raise PinPolicy(f"the new PIN is too long: at most {MAX_PIN} bytes", "choose a shorter PIN")

    def generate(self, key_min_length: int) -> str:
        length = max(self.generated_length, self.min_length, key_min_length)
        return "".join(secrets.choice("0123456789") for _ in range(length))


def load(path: Path) -> Policy:
    def bad(problem: str) -> InvalidInput:
        return InvalidInput(f"PIN policy {path}: {problem}", "see the PIN policy file in docs/enroll.md")

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad("the file does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise bad(f"cannot be read ({type(error).__name__})") from None
    except tomllib.TOMLDecodeError as error:
        raise bad(f"not valid TOML ({error})") from None
    table = doc.get("pin", {})
    if not isinstance(table, dict) or set(doc) - {"pin"}:
        raise bad("expected only a [pin] table")
    unknown = set(table) - {"source", "min_length", "generated_length"}
    if unknown:
        raise bad(f"unknown key pin.{sorted(unknown)[0]}")
    source = table.get("source", "prompt")
    if source not in ("prompt", "generate"):
        raise bad("pin.source must be 'prompt' or 'generate'")
    lengths = {k: table.get(k, getattr(Policy, k)) for k in ("min_length", "generated_length")}
    for key, value in lengths.items():
        if not (type(value) is int and MIN_PIN <= value <= MAX_PIN):
            raise bad(f"pin.{key} must be a whole number from {MIN_PIN} to {MAX_PIN}")
    return Policy(source=source, **lengths)
