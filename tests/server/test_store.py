"""The server's SQLite file: databases created by earlier versions gain the columns added since."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from keyctl.server.storage import open_database

# The passkeys table as keyctl 0.1's server created it, before attestation formats were kept.
OLD_PASSKEYS = """
CREATE TABLE passkeys (
    credential_id BLOB PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL,
    credential_data BLOB NOT NULL, aaguid TEXT NOT NULL, transports TEXT NOT NULL,
    backup_eligible INTEGER NOT NULL, backed_up INTEGER NOT NULL, sign_count INTEGER NOT NULL,
    created_at REAL NOT NULL, last_used_at REAL
)
"""


def test_an_older_database_gains_the_attestation_format_column_unknown_for_old_passkeys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(OLD_PASSKEYS)
        db.execute(
            "INSERT INTO passkeys VALUES (x'01', 1, 'Desk key', x'00', 'aaguid', '[]', 0, 0, 7, 0, NULL)"
        )
    open_database(path).close()
    open_database(path).close()  # opening it again changes nothing more
    with closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(passkeys)")]
        row = db.execute("SELECT name, sign_count, attestation_format FROM passkeys").fetchone()
    assert columns[-2:] == ["attestation_format", "seq"]  # seq: migration 2
    assert row == ("Desk key", 7, None)
