"""CI mode of the TOTP vault, as a CI runner has it: no D-Bus session at all (DBUS_SESSION_BUS_ADDRESS
unset), the vault in an encrypted file keyed from $KEYCTL_TOTP_KEY, and the CI guide's recipes run as
they are written against the reference server."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from keyctl.config import data_dir
from tests.conftest import Result, run_keyctl
from tests.webauthn.conftest import PASSWORD, Reference, account_with_totp, oathtool_code

CI_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def no_bus_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DBUS_")}
    return {**env, **extra}


def keyctl(args: list[str], env: dict[str, str], stdin: str | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "keyctl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def recipes() -> list[str]:
    """The shell scripts of the CI guide's recipes: each `|` block of the YAML after a ci-recipe mark."""
    text = CI_GUIDE.read_text()
    scripts = []
    for mark in re.finditer(r"<!-- ci-recipe.*?-->\n```yaml\n(.*?)```", text, re.S):
        lines = mark.group(1).splitlines()
        start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("|"))
        indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
        block = []
        for line in lines[start + 1 :]:
            if line.strip() and len(line) - len(line.lstrip()) < indent:
                break
            block.append(line)
        scripts.append(textwrap.dedent("\n".join(block)))
    return scripts


def test_the_ci_guide_has_two_recipes() -> None:
    scripts = recipes()
    assert len(scripts) == 2
    assert all(script.startswith("export KEYCTL_VIRTUAL_KEY=") for script in scripts)


@pytest.mark.parametrize("which", [0, 1], ids=["file-vault", "secret-from-env"])
def test_a_ci_recipe_runs_without_a_dbus_session(which: int, reference: Reference, tmp_path: Path) -> None:
    email = f"ci{which}@example.com"
    secret = account_with_totp(reference, email)
    bin_dir = str(Path(sys.executable).parent)
    env = no_bus_env(
        SERVER=reference.url,
        CI_USER=email,
        CI_PASSWORD=PASSWORD,
        CI_TOTP_SECRET=secret,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
    )
    script = "set -euo pipefail\n" + recipes()[which]
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    assert "registered a passkey for " + email in proc.stdout
    jar = (tmp_path / "session.jar").read_text()
    assert "\tkeyctl_session\t" in jar
    with reference.session() as session:
        session.load_cookies(tmp_path / "session.jar")
        me = session.call("GET", "/api/me")
    assert me["email"] == email
    assert [key["name"] for key in me["passkeys"]] == ["CI runner"]
    # Nothing in the data dir holds the TOTP secret in the clear.
    for path in data_dir().rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    if which == 0:
        vault_file = data_dir() / "totp-secrets.enc"
        assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600
        assert [entry["name"] for entry in json.loads(proc.stdout[proc.stdout.index("\n[") :])] == ["ci"]


def test_the_file_vault_codes_match_oathtool_and_need_their_key(tmp_path: Path) -> None:
    key = run_keyctl(["totp", "ci-key"]).stdout.strip()
    env = no_bus_env(KEYCTL_TOTP_KEY=key)
    added = keyctl(["totp", "add", "ci", "--secret"], env, stdin=SECRET + "\n")
    assert added.exit_code == 0, added.stderr
    for args in (["totp", "code", "ci", "--json"], ["--debug", "totp", "code", "ci", "--json"]):
        before = time.time()
        shown = keyctl(args, env)
        after = time.time()
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["code"] in {
            oathtool_code(SECRET, before),
            oathtool_code(SECRET, after),
        }
    renamed = keyctl(["totp", "rename", "ci", "ci2"], env)
    assert renamed.exit_code == 0, renamed.stderr
    other = keyctl(["totp", "code", "ci2"], no_bus_env(KEYCTL_TOTP_KEY=run_keyctl(["totp", "ci-key"]).stdout))
    assert other.exit_code == 7
    assert "cannot be decrypted with $KEYCTL_TOTP_KEY" in other.stderr
    bad = keyctl(["totp", "code", "ci2"], no_bus_env(KEYCTL_TOTP_KEY="short"))
    assert bad.exit_code == 3
    assert "$KEYCTL_TOTP_KEY is not base64url of 32 bytes" in bad.stderr
    # Without the key (keyring mode) and no bus, the secret is simply not reachable: exit 6.
    keyring_mode = keyctl(["totp", "code", "ci2"], no_bus_env())
    assert keyring_mode.exit_code == 6
    doctor = keyctl(["doctor", "--json"], env)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["keyring"]["status"] == "info"
    assert "not used in CI mode ($KEYCTL_TOTP_KEY set)" in checks["keyring"]["detail"]
    assert checks["totp file vault"]["status"] == "ok"
    assert "(1 secrets)" in checks["totp file vault"]["detail"]
    deleted = keyctl(["totp", "delete", "ci2", "--yes"], env)
    assert deleted.exit_code == 0, deleted.stderr
    assert keyctl(["doctor", "--json"], env).stdout.count("(0 secrets)") == 1
