"""One grammar across keyctl: the whole command tree walked for metavars, choices, --json and the commands
fix lines name; exit codes 130 (Ctrl-C at a real terminal) and 141 (closed pipe); suggestions, global
options after the subcommand, --db typos, every code at once, fix lines that match their cause."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest

from keyctl.cli import app as app_module
from keyctl.server import start
from tests.conftest import Result
from tests.terminal import TerminalSession
from tests.totp.conftest import index_names

Cli = Callable[..., Result]
SRC = Path(__file__).resolve().parents[2] / "src" / "keyctl"
ENUMERATED = {
    ("keyctl audit server", "--fail-on"),
    ("keyctl audit keys", "--fail-on"),
    ("keyctl register", "--uv"),
    ("keyctl totp add", "--algorithm"),
    ("keyctl virtual create", "--attestation"),
    ("keyctl virtual create", "--counter"),
    ("keyctl virtual create", "--presence"),
    ("keyctl virtual create", "--uv"),
}
LISTINGS = {
    "keyctl totp code",
    "keyctl admin users show",
    "keyctl admin audit",
    "keyctl virtual info",
    "keyctl key info",
    "keyctl mds status",
}


def _tree() -> click.Group:
    root = app_module.typer.main.get_command(app_module.build_app())
    assert isinstance(root, click.Group)
    return root


def _commands(group: click.Group, path: str = "keyctl") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def test_every_env_option_has_metavar_var() -> None:
    wrong = [
        f"{path} {option.opts[0]}"
        for path, command in _commands(_tree())
        for option in _options(command)
        if option.opts[0].endswith("-env") and option.metavar != "VAR"
    ]
    assert wrong == []


def test_every_enumerated_option_lists_its_choices() -> None:
    seen = set()
    for path, command in _commands(_tree()):
        for option in _options(command):
            if (path, option.opts[0]) in ENUMERATED:
                seen.add((path, option.opts[0]))
                assert isinstance(option.type, click.Choice), f"{path} {option.opts[0]}"
                with click.Context(command, info_name=path) as ctx:
                    shown = command.get_help(ctx).lower()
                    assert "|".join(option.type.choices).lower() in shown, path
    assert seen == ENUMERATED


def test_every_listing_command_has_json() -> None:
    listings = [
        path
        for path, command in _commands(_tree())
        if path.endswith(" list") or (command.help or "").startswith("List") or path in LISTINGS
    ]
    assert len(listings) >= 12
    missing = [
        path
        for path in listings
        if "--json" not in {o.opts[0] for o in _options(dict(_commands(_tree()))[path])}
    ]
    assert missing == []


def _strings() -> Iterator[tuple[str, str]]:
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield str(path.relative_to(SRC)), node.value
            elif isinstance(node, ast.JoinedStr):  # f-strings: placeholders become NAME
                text = "".join(v.value if isinstance(v, ast.Constant) else "NAME" for v in node.values)
                yield str(path.relative_to(SRC)), text


# A command line in a message: at the start, after a quote or colon, or after "e.g.", "run", "with".
COMMAND_LINE = (
    r"(?:^|[:'\"`]\s*|\b(?:e\.g\.|run|with|then)\s)"
    r"keyctl((?: [a-z][a-z0-9-]*| --?[a-z][a-z0-9-]*| [A-Z_:.]+)+)"
)
# A status line, a design note in cli/admin.py, certificate and state names.
PROSE = ("keyctl server stopped", "`keyctl server admin", "keyctl virtual authenticator")


def test_every_keyctl_command_named_in_the_source_exists() -> None:
    """'keyctl totp delete NAME', 'keyctl admin users list', '--force' in a fix line: each word must be a
    command (or hidden alias) of the tree, each --option one of the command's options."""
    root = _tree()
    problems = []
    checked = 0
    for where, text in _strings():
        for match in re.finditer(COMMAND_LINE, text):
            words = match.group(1).split()
            if not words or words[0] not in root.commands or match.group(0).strip().startswith(PROSE):
                continue  # prose such as "keyctl is ...", "keyctl's"
            command: click.Command = root
            checked += 1
            for word in words:
                if isinstance(command, click.Group) and not word.startswith("-"):
                    if word not in command.commands:
                        problems.append(f"{where}: {match.group(0)!r}: no command {word!r}")
                        break
                    command = command.commands[word]
                elif word.startswith("--") and not isinstance(command, click.Group):
                    names = {opt for p in command.params for opt in getattr(p, "opts", [])}
                    names |= {opt for p in command.params for opt in getattr(p, "secondary_opts", [])}
                    if word not in names | {"--help"}:
                        problems.append(f"{where}: {match.group(0)!r}: no option {word}")
                elif not isinstance(command, click.Group):
                    continue  # an argument
    assert checked >= 20
    assert problems == []


def test_no_help_summary_is_cut_off() -> None:
    root = _tree()

    def groups(group: click.Group, path: str) -> Iterator[tuple[str, click.Group]]:
        yield path, group
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from groups(command, f"{path} {name}")

    cut = []
    for path, group in groups(root, "keyctl"):
        if path != "keyctl" and not path.startswith("keyctl admin"):
            continue  # the issue asks for the top level; keyctl admin is new
        with click.Context(group, info_name=path, terminal_width=80) as ctx:
            if "..." in group.get_help(ctx).split("Commands:")[-1]:
                cut.append(path)
    assert cut == []


def test_server_help_says_it_runs_without_a_subcommand(cli: Cli) -> None:
    shown = cli("server", "--help")
    assert "Usage: keyctl server [OPTIONS] [COMMAND [ARGS]...]" in shown.stdout
    assert "no subcommand" in shown.stdout


def test_a_mistyped_command_gets_the_closest_one(cli: Cli) -> None:
    result = cli("totp", "lst")
    assert result.exit_code == 2
    assert "No such command 'lst'. Did you mean 'list'?" in result.stderr
    assert "Did you mean 'admin'?" in cli("admn").stderr
    assert "Did you mean" not in cli("zzzzzz").stderr


def test_debug_after_the_subcommand(cli: Cli) -> None:
    plain = cli("totp", "code", "nope", "--json")
    assert plain.exit_code == 4
    assert "Traceback" not in plain.stderr
    result = cli("totp", "code", "nope", "--json", "--debug")
    assert result.exit_code == 4
    assert "Traceback" in result.stderr


def test_a_bad_choice_is_exit_3_in_keyctl_s_error_format(cli: Cli) -> None:
    result = cli("audit", "server", "--server", "http://127.0.0.1:9", "--fail-on", "severe")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-2:] == [
        "error: --fail-on: 'severe' is not one of 'info', 'low', 'medium', 'high', 'critical'",
        "  fix: see: keyctl audit server --help",
    ]


def test_ctrl_c_at_a_hidden_prompt_is_130_and_adds_nothing() -> None:
    terminal = TerminalSession(["totp", "add", "bank", "--secret"])  # keyctl on a real terminal
    terminal.expect("secret:")
    terminal.type("\x03")  # Ctrl-C as the terminal sends it
    assert terminal.wait() == 130, terminal.text
    assert index_names() == []


def test_output_cut_by_a_closed_pipe_is_141_and_quiet() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyctl", "totp", "ci-key"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before keyctl writes
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert err == b""


def test_server_db_in_a_missing_directory_is_refused_unless_create(cli: Cli, tmp_path: Path) -> None:
    typo = tmp_path / "no-such-dir" / "rp.sqlite3"
    refused = cli("server", "user", "add", "a@example.com", "--db", str(typo))
    assert refused.exit_code == 3
    assert f"the directory {typo.parent} does not exist" in refused.stderr
    assert "--create" in refused.stderr
    assert not typo.parent.exists()
    os.environ["NEW_PW"] = "correct horse battery staple"
    try:
        created = cli(
            "server",
            "user",
            "add",
            "a@example.com",
            "--db",
            str(typo),
            "--create",
            "--password-env",
            "NEW_PW",
        )
    finally:
        del os.environ["NEW_PW"]
    assert created.exit_code == 0, created.stderr
    assert typo.exists()


def test_fix_lines_match_the_cause(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "wrong password")
    with start(tmp_path / "rp.sqlite3", max_failures=1) as server:
        server.create_user("gil@example.com", "correct horse battery staple")
        base = ("login", "--user", "gil@example.com", "--password-env", "PW", "--totp-secret-env", "PW")
        # A URL with a path prefix the server does not have: not a password problem.
        wrong_url = cli(*base, "--server", server.url + "/sso")
        assert wrong_url.exit_code == 21
        assert "fix: the server has no such endpoint: check the server URL and --profile" in wrong_url.stderr
        cli(*base, "--server", server.url)  # one wrong password: blocked (max_failures=1)
        blocked = cli(*base, "--server", server.url)
        assert "unblock link" in blocked.stderr, blocked.stderr
        assert "check the user name, password" not in blocked.stderr
        tls = cli(*base, "--server", server.url.replace("http://localhost", "https://localhost"))
        assert tls.exit_code == 20
        assert "TLS handshake" in tls.stderr
        assert "try http://" in tls.stderr


def test_one_device_option_one_env_var_one_parser(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (
        ("login", "--server", "http://localhost:9", "--device", "bogus"),
        ("register", "--server", "http://localhost:9", "--user", "a@example.com", "-d", "bogus"),
        ("key", "info", "--device", "bogus"),
        ("key", "list", "-d", "bogus"),
        ("audit", "keys", "-d", "bogus"),
    ):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.stderr)
        assert "error: unknown device 'bogus'" in result.stderr
    monkeypatch.setenv("KEYCTL_DEVICE", "udp:no-port")
    for args in (("login", "--server", "http://localhost:9"), ("key", "info")):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.stderr)
        assert "device address 'no-port' is not HOST:PORT" in result.stderr
    monkeypatch.delenv("KEYCTL_DEVICE")
    both = cli("login", "--server", "http://localhost:9", "--device", "usb", "--authenticator", "virtual:x")
    assert both.exit_code == 3
    assert "--device usb and --authenticator virtual:x disagree" in both.stderr


def test_key_list_with_devices_lists_only_those(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from keyctl.authenticator import VirtualAuthenticator
    from keyctl.authenticator.store import ENV_VIRTUAL_KEY, new_ci_key
    from keyctl.hid.udp import UdpServer

    monkeypatch.setenv(ENV_VIRTUAL_KEY, new_ci_key())
    assert cli("virtual", "create", "stored").exit_code == 0
    everything = json.loads(cli("key", "list", "--json").stdout)
    assert [k["spec"] for k in everything] == ["virtual:stored"]
    server = UdpServer(VirtualAuthenticator(), "127.0.0.1", 0).start()
    try:
        spec = "udp:{}:{}".format(*server.address)
        only = json.loads(cli("key", "list", "-d", spec, "--json").stdout)
    finally:
        server.stop()
    assert [(k["spec"], k["problem"]) for k in only] == [(spec, None)]
