"""Mutation testing of the modules where a silent mistake costs most (issue #21 item 7).

A small purpose-built AST mutator, not mutmut or cosmic-ray: many of keyctl's tests run ``python -m
keyctl`` as a separate process, servers in threads and a Secret Service over D-Bus, so each mutant is
written into a copy of ``src/`` that every test process imports through PYTHONPATH (ahead of the editable
install), and the module's own test files run against it with ``pytest -x``. A mutant is killed when
they fail (or exceed three times the clean run's time), and survives when they pass.

Operators: comparison swaps (== !=, < <=, > >=, in / not in, is / is not), and <-> or, a dropped
``not``, + <-> -, an integer constant n -> n + 1, True <-> False, a ``return X`` -> ``return None``.

Not part of CI (too slow): run it by hand, inside a Secret Service session, e.g.
    dbus-run-session -- bash scripts/with-secret-service.sh \
        .venv/bin/python benchmarks/mutation.py --sample 25 --seed 1 --json mutation-report.json
``--module`` picks modules (a key of MODULES or a prefix: ``--module server/policy`` is the whole package),
``--sample N`` draws N mutants per module (all of them without it), from a generator seeded with ``--seed``
for each module afresh.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# module or package (under src/keyctl) -> the test files that speak for it
MODULES: dict[str, list[str]] = {
    "authenticator/commands": [
        "tests/authenticator/test_ctap2_commands.py",
        "tests/authenticator/test_client_pin.py",
        "tests/authenticator/test_credential_management.py",
        "tests/authenticator/test_bio_enrollment.py",
        "tests/authenticator/test_webauthn_verification.py",
        "tests/authenticator/test_extensions.py",  # hmac-secret, credBlob, largeBlob(Key), thirdPartyPayment
        "tests/authenticator/test_presence.py",  # when a command asks for a touch (a UV token carries one)
        "tests/authenticator/test_kinds.py",  # security key, synced provider, platform (alwaysUv)
    ],
    "authenticator/framing.py": [
        "tests/authenticator/test_framing.py",
        "tests/authenticator/test_presence.py",  # keepalives and CANCEL while a touch is awaited
        "tests/authenticator/test_keepalive.py",
    ],
    # The sign-in policy, one entry per module of the package: its own tests (tests/server/policy/; all of
    # them for core, which every module uses), then the HTTP tests of its concern (not the browser ones:
    # too slow).
    **{
        f"server/policy/{name}.py": [
            "tests/server/policy" if name == "core" else f"tests/server/policy/test_{name}.py",
            *(f"tests/server/{t}.py" for t in tests),
        ]
        for name, tests in {
            "__init__": [  # the facade the web layer calls: every concern's server tests
                "test_told_times",
                "test_admin_changes",
                "test_admin",
                "test_risk",
                "test_step_up",
                "test_admin_step_up",
                "test_enrollment",
                "test_signin",
                "test_passkeys",
                "test_password_reset",
                "test_captcha",
            ],
            "core": [
                "test_told_times",
                "test_passwords",
                "test_bad_input",  # core's checks of names, credential IDs, enums, responses, transports
                "test_signin",
                "test_session_expiry",
                "test_passkeys",
            ],
            "accounts": [
                "test_passwords",
                "test_signin",
                "test_admin",
                "test_password_reset",
                "test_seed_policy",
            ],
            "two_factor": ["test_enrollment", "test_signin", "test_hardening", "test_hardening_more"],
            "sessions": ["test_session_expiry", "test_signin", "test_enrollment"],  # enrollment sessions
            "passkeys": ["test_challenges", "test_device_bound", "test_passkeys"],
            "prompt": ["test_enrollment", "test_signin", "test_passkeys"],
            "protection": ["test_protection", "test_seed_policy", "test_proxy"],
            "risk": ["test_risk"],
            "bots": ["test_captcha"],
            "step_up": ["test_step_up", "test_admin_step_up"],
            "password_reset": ["test_password_reset"],
            "admin": [
                "test_told_times",
                "test_admin",
                "test_admin_changes",
                "test_admin_step_up",
                "test_enrollment",
            ],
            "audit": ["test_admin", "test_admin_changes"],
        }.items()
    },
    "webauthn/flows.py": [  # the quick, pointed files first: pytest -x stops at the first failure
        "tests/webauthn/test_flow_choices.py",  # what flows decides: --uv, --account, user handles
        "tests/interop/test_accounts.py",  # the account chooser (--account, --credential, a terminal)
        "tests/webauthn",  # every profile and option goes through it
        "tests/interop/test_builtin_profile.py",
        "tests/interop/test_matrix.py",  # every ceremony against other people's relying parties
    ],
    "webauthn/origin.py": ["tests/webauthn/test_origin.py", "tests/webauthn/test_errors.py"],
    "totp/codes.py": ["tests/totp/test_codes.py"],
}

_SWAPS: dict[type[ast.AST], type[ast.AST]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
}


@dataclass(frozen=True)
class Site:
    file: str  # under src/keyctl
    index: int  # the index-th mutation of that file
    line: int
    description: str


@dataclass(frozen=True)
class Outcome:
    module: str
    file: str
    line: int
    description: str
    killed: bool
    seconds: float


def _is_docstring_or_annotation(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    if isinstance(parent, ast.Expr):
        return True
    while parent is not None:
        if isinstance(parent, (ast.arg, ast.AnnAssign)) and node is getattr(parent, "annotation", None):
            return True
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is parent.returns:
            return True
        node, parent = parent, parents.get(parent)
    return False


class _Mutator:
    """Walks a module's tree; ``sites`` lists every mutation, ``apply(i)`` performs the i-th one."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def _candidates(self) -> Iterator[tuple[ast.AST, str, object]]:
        for node in ast.walk(self.tree):
            if _is_docstring_or_annotation(node, self.parents):
                continue
            if isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    if type(op) in _SWAPS:
                        yield node, f"{type(op).__name__} -> {_SWAPS[type(op)].__name__}", ("ops", i)
            elif isinstance(node, ast.BoolOp) or (isinstance(node, ast.BinOp) and type(node.op) in _SWAPS):
                yield node, f"{type(node.op).__name__} -> {_SWAPS[type(node.op)].__name__}", "op"
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                yield node, "drop not", "not"
            elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
                yield node, f"{node.value} -> {not node.value}", "bool"
            elif isinstance(node, ast.Constant) and type(node.value) is int:
                yield node, f"{node.value} -> {node.value + 1}", "int"
            elif (
                isinstance(node, ast.Return)
                and node.value is not None
                and not (isinstance(node.value, ast.Constant) and node.value.value is None)
            ):
                yield node, "return X -> return None", "return"

    def sites(self, file: str) -> list[Site]:
        return [
            Site(file, i, getattr(node, "lineno", 0), what)
            for i, (node, what, _) in enumerate(self._candidates())
        ]

    def apply(self, index: int) -> None:
        for i, (node, _, how) in enumerate(self._candidates()):
            if i != index:
                continue
            if isinstance(how, tuple):
                compare = node
                assert isinstance(compare, ast.Compare)
                compare.ops[how[1]] = _SWAPS[type(compare.ops[how[1]])]()
            elif how == "op":
                node.op = _SWAPS[type(node.op)]()  # type: ignore[attr-defined]
            elif how == "not":
                parent = self.parents[node]
                for field, value in ast.iter_fields(parent):
                    if value is node:
                        setattr(parent, field, node.operand)  # type: ignore[attr-defined]
                    elif isinstance(value, list):
                        value[:] = [node.operand if v is node else v for v in value]  # type: ignore[attr-defined]
            elif how == "bool":
                node.value = not node.value  # type: ignore[attr-defined]
            elif how == "int":
                node.value = node.value + 1  # type: ignore[attr-defined]
            elif how == "return":
                node.value = ast.Constant(None)  # type: ignore[attr-defined]
            return
        raise IndexError(index)


def _pytest(tests: list[str], src: Path, timeout: float) -> tuple[bool, float]:
    """Run the tests against the copy of src/; (passed, seconds). A timeout counts as a failure."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        passed = proc.returncode == 0
    except subprocess.TimeoutExpired:
        passed = False
    return passed, time.monotonic() - started


def _files(module: str) -> list[str]:
    path = REPO / "src" / "keyctl" / module
    found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [str(f.relative_to(REPO / "src" / "keyctl")) for f in found]


def _tests(module: str) -> list[str]:
    """The module's test files and directories that exist (a listed one may not have landed yet)."""
    return [test for test in MODULES[module] if (REPO / test).exists()]


Wanted = set[tuple[str, int, str]]  # (file, line, description) of mutants to run again


def run_module(
    module: str, sample: int | None, seed: int, work: Path, only: Wanted | None = None
) -> list[Outcome]:
    """Run the module's mutants: all, a sample (drawn with a generator seeded for this module alone, so a
    module's sample does not depend on which others run), or ``only`` those (file, line, description)."""
    tests = _tests(module)
    sources = {file: (REPO / "src" / "keyctl" / file).read_text() for file in _files(module)}
    sites = [site for file, text in sources.items() for site in _Mutator(ast.parse(text)).sites(file)]
    if only is not None:
        chosen = [site for site in sites if (site.file, site.line, site.description) in only]
        lost = {w for w in only if w[0] in sources} - {(s.file, s.line, s.description) for s in chosen}
        for file, line, description in sorted(lost):
            print(f"  (not found any more: {file}:{line} {description})", flush=True)
    elif sample and sample < len(sites):
        chosen = sorted(random.Random(seed).sample(sites, sample), key=lambda s: (s.file, s.index))
    else:
        chosen = sites
    if not chosen:
        return []
    copy = work / "src"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(REPO / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    clean, baseline = _pytest(tests, copy, timeout=1800)
    if not clean:
        raise SystemExit(f"{module}: the tests fail without any mutation; fix them first")
    print(f"{module}: {len(sites)} mutants, running {len(chosen)}; clean run {baseline:.1f} s", flush=True)
    outcomes = []
    for site in chosen:
        target = copy / "keyctl" / site.file
        tree = ast.parse(sources[site.file])
        _Mutator(tree).apply(site.index)
        target.write_text(ast.unparse(ast.fix_missing_locations(tree)) + "\n")
        passed, seconds = _pytest(tests, copy, timeout=max(60.0, 3 * baseline))
        target.write_text(sources[site.file])
        outcome = Outcome(module, site.file, site.line, site.description, not passed, round(seconds, 1))
        outcomes.append(outcome)
        state = "killed  " if outcome.killed else "SURVIVED"
        print(f"  {state} {site.file}:{site.line} {site.description}", flush=True)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--module",
        action="append",
        help="a key of MODULES, or a prefix of some (server/policy); default: all",
    )
    parser.add_argument("--sample", type=int, help="mutants drawn per module (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument(
        "--survivors-of", type=Path, help="run again only the mutants that survived in this --json report"
    )
    args = parser.parse_args()
    modules = [m for m in MODULES if not args.module or any(m.startswith(a) for a in args.module)]
    if not modules:
        parser.error(f"--module: none of {args.module} names or begins a module of {sorted(MODULES)}")
    only = None
    if args.survivors_of:
        report = json.loads(args.survivors_of.read_text())
        only = {(o["file"], o["line"], o["description"]) for o in report if not o["killed"]}
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="keyctl-mutation-") as work:
        for module in modules:
            outcomes += run_module(module, args.sample, args.seed, Path(work), only)
    print("\nmodule | mutants run | killed | score")
    for module in dict.fromkeys(o.module for o in outcomes):
        mine = [o for o in outcomes if o.module == module]
        killed = sum(o.killed for o in mine)
        print(f"{module} | {len(mine)} | {killed} | {100 * killed / len(mine):.0f}%")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")


if __name__ == "__main__":
    main()
