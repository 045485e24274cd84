"""The storage port, the same SQL against both adapters: types round-trip, a failed unit of work leaves
nothing, the portable upsert, the append-only audit log."""

from __future__ import annotations

import pytest

from keyctl.server.storage import Database, Tx


def _user(tx: Tx, email: str, handle: bytes) -> None:
    tx.execute(
        "INSERT INTO users (email, password_hash, user_handle, created_at) VALUES (?, ?, ?, ?)",
        (email, "hash", handle, 1.5),
    )


def test_values_come_back_as_stored(db: Database) -> None:
    def work(tx: Tx) -> None:
        _user(tx, "a@example.com", b"\x00\xff" * 16)
        user = tx.one("SELECT id FROM users WHERE email = ?", ("a@example.com",))
        assert user is not None
        tx.execute(
            "INSERT INTO passkeys (credential_id, user_id, name, credential_data, aaguid, transports, "
            "backup_eligible, backed_up, sign_count, created_at, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                b"\x01\x02",
                user["id"],
                "Désk 🔑",
                b"\x00" * 70,
                "aaguid",
                "[]",
                True,
                False,
                2**32 - 1,
                0.25,
                1,
            ),
        )

    db.run(work)
    row = db.run(lambda tx: tx.one("SELECT * FROM passkeys"))
    assert row is not None
    assert row["credential_id"] == b"\x01\x02"
    assert row["name"] == "Désk 🔑"
    assert (row["backup_eligible"], row["backed_up"]) == (1, 0)  # booleans are 0/1 on both
    assert row["sign_count"] == 2**32 - 1  # a 32-bit unsigned counter fits
    assert row["created_at"] == 0.25
    assert row["last_used_at"] is None


def test_a_unit_of_work_that_raises_writes_nothing(db: Database) -> None:
    def work(tx: Tx) -> None:
        _user(tx, "a@example.com", b"h1")
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        db.run(work)
    assert db.run(lambda tx: tx.all("SELECT * FROM users")) == []


def test_the_portable_upsert_counts_up(db: Database) -> None:
    upsert = (
        "INSERT INTO failures (ip, email, count) VALUES (?, ?, 1) "
        "ON CONFLICT (ip, email) DO UPDATE SET count = failures.count + 1 RETURNING count"
    )
    counts = [db.run(lambda tx: tx.one(upsert, ("::1", "a@example.com"))) for _ in range(3)]
    assert [c["count"] for c in counts if c is not None] == [1, 2, 3]


def test_the_audit_log_is_append_only(db: Database) -> None:
    db.run(
        lambda tx: tx.execute("INSERT INTO audit (time, event, detail) VALUES (?, ?, ?)", (1.0, "x", "{}"))
    )
    for statement in ("UPDATE audit SET event = 'y'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            db.run(lambda tx, s=statement: tx.execute(s))  # type: ignore[misc]
    rows = db.run(lambda tx: tx.all("SELECT id, event FROM audit"))
    assert rows == [{"id": 1, "event": "x"}]
