"""Shell completion as docs/install.md sets it up: ``keyctl --show-completion SHELL`` saved where each shell
loads completions from (in a throwaway HOME), then completing against the installed ``keyctl`` console
script: bash through bash-completion's loader and its COMP_WORDS protocol, zsh by pressing Tab in an
interactive shell on a pseudo-terminal, fish through its own ``complete -C``. ``keyctl totp code`` has a
fast path that skips Typer: its options must complete too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..terminal import TerminalSession

# the console script of this environment first, as the user's shell finds an installed keyctl
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
SAVED = {  # where docs/install.md tells users to save each script, under HOME
    "bash": ".local/share/bash-completion/completions/keyctl",
    "zsh": ".zfunc/_keyctl",
    "fish": ".config/fish/completions/keyctl.fish",
}


def _home(tmp_path: Path, shell: str) -> dict[str, str]:
    """A HOME with the script saved as the docs say; the environment to run ``shell`` in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(PATH=PATH, HOME=str(tmp_path))
    script = subprocess.run(
        ["keyctl", "--show-completion", shell], capture_output=True, text=True, env=env, timeout=60
    )
    assert script.returncode == 0, script.stderr
    (tmp_path / SAVED[shell]).parent.mkdir(parents=True)
    (tmp_path / SAVED[shell]).write_text(script.stdout)
    return env


def _run(args: list[str], env: dict[str, str]) -> list[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def _bash_completions(words: list[str], env: dict[str, str]) -> list[str]:
    """COMPREPLY for the command line ``words`` (the last: the word being completed), as bash fills it on
    Tab: bash-completion loads keyctl's script on first use, then calls its function."""
    script = (
        "source /usr/share/bash-completion/bash_completion\n"
        "__load_completion keyctl && complete -p keyctl | grep -q _keyctl_completion || exit 9\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))\n'
        '_keyctl_completion keyctl "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    return _run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words], env)


def test_bash_completes_commands_subcommands_and_options(tmp_path: Path) -> None:
    env = _home(tmp_path, "bash")
    assert _bash_completions(["keyctl", "to"], env) == ["totp"]
    assert _bash_completions(["keyctl", "key", "pin", ""], env) == ["set", "change", "verify", "retries"]
    assert _bash_completions(["keyctl", "login", "--se"], env) == ["--server"]
    assert _bash_completions(["keyctl", "--show-completion", ""], env) == ["bash", "zsh", "fish"]
    # a hidden alias (totp remove) is not offered
    assert _bash_completions(["keyctl", "totp", "re"], env) == ["rename"]


def test_bash_completes_the_options_of_the_fast_path_command(tmp_path: Path) -> None:
    env = _home(tmp_path, "bash")
    assert set(_bash_completions(["keyctl", "totp", "code", "--"], env)) == {"--json", "--watch", "--help"}
    assert _bash_completions(["keyctl", "totp", "code", "--j"], env) == ["--json"]


def test_fish_completes_commands_and_options(tmp_path: Path) -> None:
    env = _home(tmp_path, "fish")

    def fish(line: str) -> list[str]:  # fish autoloads completions/keyctl.fish on first use
        return [entry.split("\t")[0] for entry in _run(["fish", "-c", f"complete -C '{line}'"], env)]

    assert fish("keyctl to") == ["totp"]
    assert fish("keyctl totp code --j") == ["--json"]
    assert sorted(fish("keyctl key pin ")) == ["change", "retries", "set", "verify"]


@pytest.mark.parametrize(
    ("typed", "completed"),
    [("keyctl to", "keyctl totp"), ("keyctl totp code --j", "keyctl totp code --json"),
     ("keyctl key pin ret", "keyctl key pin retries")],
)  # fmt: skip
def test_zsh_completes_on_tab(tmp_path: Path, typed: str, completed: str) -> None:
    env = {**_home(tmp_path, "zsh"), "TERM": "xterm", "PS1": "%% "}
    zsh = TerminalSession([], env, program=["zsh", "-f", "-i"])
    # the ~/.zshrc lines of docs/install.md (-f: no other startup file)
    zsh.type(
        f"bindkey -e; fpath=(~/.zfunc $fpath); autoload -Uz compinit && compinit -d {tmp_path}/zcompdump\n"
    )
    zsh.type(typed + "\t")
    zsh.expect(completed, timeout=60)
    # Ctrl-A, a print in front of the line, Ctrl-E, Enter: the shell prints the line as Tab left it
    zsh.type("\x01print -- RE''SULT \x05\n")
    zsh.expect(f"RESULT {completed}\r\n")
    zsh.type("exit\n")
    assert zsh.wait() == 0
