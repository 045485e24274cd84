"""Versioned migrations: a new database gets the whole schema, an existing one only what it lacks, once,
even when several processes open it at the same moment; a database made by the release before versioning
(a committed file) upgrades in place and today's server signs its users in from it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from keyctl.errors import StateError
from keyctl.server import start
from keyctl.server.storage import Database, open_database
from keyctl.server.storage.migrations import LATEST, MIGRATIONS, applied_versions, migrate
from tests.postgres import Cluster
from tests.server.conftest import FakeClock, client, totp_code
from tests.server.softauth import Credential, SoftAuthenticator, unb64url

HERE = Path(__file__).parent
RELEASE_DB = HERE / "release-unversioned.sqlite3"
RELEASE_SECRETS = json.loads((HERE / "release-unversioned.json").read_text())
DATA_TABLES = ("users", "passkeys", "sessions", "invites", "failures", "audit")


def test_a_new_database_gets_every_version_once(db: Database) -> None:
    assert db.run(applied_versions) == [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert migrate(db, now=0.0) == []  # opening it again applies nothing


def test_a_database_newer_than_this_keyctl_is_refused_untouched(target: str) -> None:
    db = open_database(target)
    db.run(
        lambda tx: tx.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (LATEST + 1, "future", 0.0))
    )
    db.close()
    with pytest.raises(StateError, match=rf"schema version {LATEST + 1}, newer than this keyctl"):
        open_database(target)


def test_several_processes_opening_a_new_database_at_once_migrate_it_once(target: str) -> None:
    """Eight connections (as eight server processes would have) open one empty database together."""
    barrier = threading.Barrier(8)
    opened: list[Database] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(open_database(target))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert opened[0].run(lambda tx: tx.all("SELECT version FROM schema_migrations ORDER BY version")) == [
            {"version": v} for v in range(1, LATEST + 1)
        ]
    finally:
        for db in opened:
            db.close()


def test_a_postgresql_url_that_cannot_be_reached_is_refused_without_its_password(pg_cluster: Cluster) -> None:
    url = pg_cluster.url("no_such_database").replace("keyctl@", "keyctl:pw-s3cret-42@")
    with pytest.raises(StateError) as caught:
        open_database(url)
    text = str(caught.value) + " " + caught.value.remedy
    assert "pw-s3cret-42" not in text
    assert "no_such_database" in text
    assert "does not exist" in text


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(path)) as db:
        return {
            table: sorted(
                tuple(row)
                for row in db.execute(
                    # The columns every release had, in a fixed order (migrations only add columns).
                    f"SELECT {', '.join(_release_columns(table))} FROM {table}"
                )
            )
            for table in DATA_TABLES
        }


def _release_columns(table: str) -> list[str]:
    with closing(sqlite3.connect(RELEASE_DB)) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def test_the_release_database_upgrades_in_place_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "rp.sqlite3"
    shutil.copyfile(RELEASE_DB, path)
    before = _rows(path)
    assert before["users"]
    assert before["passkeys"]
    assert before["sessions"]
    assert before["invites"]
    assert before["failures"]
    assert len(before["audit"]) >= 5

    db = open_database(path, now=2_000_000_000.0)
    try:
        assert db.run(applied_versions) == list(range(1, LATEST + 1))
        seq = db.run(lambda tx: tx.all("SELECT seq FROM passkeys"))
        assert seq == [{"seq": 1}]
        assert db.run(lambda tx: tx.all("SELECT * FROM ceremony_challenges")) == []
    finally:
        db.close()
    assert _rows(path) == before
    again = open_database(path)
    assert migrate(again, now=0.0) == []
    again.close()
    assert _rows(path) == before


def test_the_upgraded_release_database_still_signs_its_user_in_with_totp_and_the_passkey(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rp.sqlite3"
    shutil.copyfile(RELEASE_DB, path)
    open_database(path).close()
    secrets = RELEASE_SECRETS
    clock = FakeClock()
    clock.now = secrets["clock"] + 3600
    with start(path, clock=clock, rate_limit=100_000) as server, client(server) as http:
        step = http.post(
            "/api/signin/password", json={"email": secrets["email"], "password": secrets["password"]}
        )
        assert step.json() == {"status": "totp_required"}, step.text
        done = http.post("/api/signin/totp", json={"code": totp_code(secrets["totp_secret"], clock())})
        assert done.status_code == 200, done.text

        authenticator = SoftAuthenticator(server.url)
        key = serialization.load_pem_private_key(secrets["credential_key_pem"].encode(), password=None)
        credential_id = unb64url(secrets["credential_id"])
        authenticator.credentials[credential_id] = Credential(
            credential_id,
            key,
            "localhost",
            unb64url(secrets["user_handle"]),
            secrets["counter"],  # type: ignore[arg-type]
        )
        options = http.post("/api/passkeys/login/options", json={}).json()
        verified = http.post("/api/passkeys/login/verify", json=authenticator.get(options))
        assert verified.status_code == 200, verified.text
        assert verified.json()["user"] == {"email": secrets["email"]}


def test_the_postgresql_schema_matches_sqlites_columns(pg_cluster: Cluster, tmp_path: Path) -> None:
    """One schema: each table has the same columns, in the same order, on both engines."""
    sqlite_db = open_database(tmp_path / "rp.sqlite3")
    sqlite_db.close()
    with closing(sqlite3.connect(tmp_path / "rp.sqlite3")) as lite:
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        sqlite_columns = {
            t: [r[1] for r in lite.execute(f"PRAGMA table_info({t})")]
            for t in tables
            if t != "sqlite_sequence"
        }
    url = pg_cluster.database()
    open_database(url).close()
    with psycopg.connect(url) as pg:
        postgres_columns = {
            t: [
                r[0]
                for r in pg.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "ORDER BY ordinal_position",
                    (t,),
                )
            ]
            for t in sqlite_columns
        }
    assert postgres_columns == sqlite_columns
