"""The enrollment log: one record per user, appended as soon as that user is done.

``.csv`` and ``.jsonl`` files get one line per record, written with a single ``write`` on a file opened
for appending (never a half line, even if keyctl dies); ``.json`` files hold one JSON array, rewritten
atomically (temp file + rename) with each record. The log holds no secrets: no PIN, no session.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from keyctl.errors import InvalidInput, StateError
from keyctl.fileio import atomic_write

Outcome = Literal["enrolled", "already_registered", "failed"]
FIELDS = ("time", "user", "result", "key", "serial", "aaguid", "credential_id", "detail")
FORMATS = (".csv", ".json", ".jsonl")


@dataclass(frozen=True)
class Record:
    time: str  # UTC, ISO 8601
    user: str
    result: Outcome
    key: str | None  # the device spec or USB path the key was reached at
    serial: str | None  # USB serial number, when the key reports one
    aaguid: str | None
    credential_id: str | None  # base64url
    detail: str  # what happened, in one line (the error message for a failure)

    def as_json(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


def check_path(path: Path) -> None:
    """Refuse an unusable log before the batch touches any key."""
    if path.suffix not in FORMATS:
        raise InvalidInput(
            f"--log {path}: unknown format {path.suffix!r}", f"end the name in {', '.join(FORMATS)}"
        )
    if path.suffix == ".json" and path.exists():
        _read_array(path)


def _read_array(path: Path) -> list[object]:
    try:
        text = path.read_text(encoding="utf-8")
        records = json.loads(text) if text.strip() else []
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise StateError(
            f"enrollment log {path} cannot be read as JSON ({type(error).__name__})", "give a new --log file"
        ) from None
    if not isinstance(records, list):
        raise StateError(f"enrollment log {path} is not a JSON array", "give a new --log file")
    return records


def append(path: Path, record: Record) -> None:
    try:
        if path.suffix == ".json":
            records = _read_array(path) if path.exists() else []
            records.append(record.as_json())
            atomic_write(path, (json.dumps(records, indent=2) + "\n").encode(), mode=0o600)
            return
        if path.suffix == ".jsonl":
            line = json.dumps(record.as_json()) + "\n"
        else:
            out = io.StringIO()
            writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
            if not path.exists() or path.stat().st_size == 0:
                writer.writeheader()
            writer.writerow(record.as_json())
            line = out.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise StateError(
            f"enrollment log {path} cannot be written ({error.strerror})",
            "check the path and its permissions",
        ) from None
