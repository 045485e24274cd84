"""Server profiles: the built-ins load, and every mistake in a profile file is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyctl.errors import ExitCode, InvalidInput, NotFound
from keyctl.webauthn import profile as profiles
from keyctl.webauthn.profile import ServerError

MINIMAL = """
name = "mine"
[response]
verdict = "ok"
verdict_equals = true
[register.begin]
path = "/r/begin"
[register.finish]
path = "/r/finish"
[login.begin]
path = "/l/begin"
[login.finish]
path = "/l/finish"
"""


def test_the_four_built_in_profiles_exist_and_load() -> None:
    assert profiles.builtin_names() == ["fido-conformance", "fido2-example", "keyctl", "simplewebauthn"]
    for name in profiles.builtin_names():
        loaded = profiles.load(name)
        assert loaded.name == name
        assert loaded.source == "built-in"


def test_built_in_conventions() -> None:
    simple = profiles.load("simplewebauthn")
    assert (simple.register.begin.method, simple.register.begin.path) == (
        "GET",
        "/generate-registration-options",
    )
    assert (simple.login.finish.method, simple.login.finish.path) == ("POST", "/verify-authentication")
    fido2 = profiles.load("fido2-example")
    assert fido2.login.begin.options == "publicKey"
    assert fido2.login.begin.status[404] is ServerError.NO_CREDENTIAL
    conformance = profiles.load("fido-conformance")
    assert conformance.register.begin.path == "/attestation/options"
    assert (conformance.verdict, conformance.verdict_equals) == ("status", "ok")


def test_a_profile_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    loaded = profiles.load(str(path))
    assert loaded.name == "mine"
    assert loaded.source == str(path)
    assert loaded.register.begin.method == "POST"


def test_unknown_names_and_missing_files_are_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no built-in server profile named 'nope'") as caught:
        profiles.load("nope")
    assert "simplewebauthn" in caught.value.remedy
    with pytest.raises(NotFound, match="does not exist"):
        profiles.load(str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t + "\n[[[", "is not valid TOML"),
        (
            lambda t: t.replace('path = "/r/begin"', 'path = "r/begin"'),
            "register.begin.path must start with '/'",
        ),
        (lambda t: t.replace('[login.finish]\npath = "/l/finish"', ""), "login.finish is missing"),
        (lambda t: t.replace("verdict_equals = true", ""), "response.verdict_equals is missing"),
        (
            lambda t: t.replace('path = "/l/begin"', 'path = "/l/begin"\nbody = { u = "{usr}" }'),
            "login.begin.body.u uses unknown placeholder {usr}",
        ),
        (
            lambda t: t.replace('path = "/l/begin"', 'path = "/l/begin"\nstatus = { 404 = "gone" }'),
            "login.begin.status.404 is 'gone', not one of",
        ),
        (
            lambda t: t.replace('path = "/l/begin"', 'path = "/l/begin"\nstatus = { 200 = "no-credential" }'),
            "must be an HTTP error status",
        ),
        (
            lambda t: t.replace('path = "/l/begin"', 'path = "/l/begin"\nmethod = "PUT"'),
            "must be GET or POST",
        ),
        (lambda t: t + '\n[session]\ncsrf_header = "X-CSRF"\n', "must be given together"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, change: object, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(change(MINIMAL))  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message.replace("{", r"\{").replace("(", r"\(")):
        profiles.load(str(path))


def test_templates_fill_typed_values_and_drop_unknown_ones() -> None:
    template = {"username": "{user}", "sel": {"rk": "{require_resident_key}", "uv": "{uv}"}, "fixed": "x"}
    assert profiles.fill(template, {"user": "a@b", "require_resident_key": True}) == {
        "username": "a@b",
        "sel": {"rk": True},
        "fixed": "x",
    }


def test_dig_and_bury_follow_dotted_paths() -> None:
    assert profiles.dig({"a": {"b": 1}}, "a.b") == 1
    assert profiles.dig({"a": 1}, "a.b") is None
    assert profiles.dig({"a": 1}, "") == {"a": 1}
    assert profiles.bury({"id": "x"}, "credential", {"name": "n"}) == {"name": "n", "credential": {"id": "x"}}
    assert profiles.bury({"id": "x"}, "", {"name": "n"}) == {"name": "n", "id": "x"}
    assert profiles.bury(1, "a.b", {"a": {"c": 2}}) == {"a": {"c": 2, "b": 1}}


def test_cli_reports_a_bad_profile_with_its_exit_code(cli: object, tmp_path: Path) -> None:
    result = cli("login", "--server", "https://example.com", "--profile", "nope")  # type: ignore[operator]
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no built-in server profile named 'nope'" in result.stderr
    path = tmp_path / "bad.toml"
    path.write_text("name = 1")
    result = cli("login", "--server", "https://example.com", "--profile", str(path))  # type: ignore[operator]
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "bad.toml: response is missing" in result.stderr
