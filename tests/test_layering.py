"""The dependency rules of the architecture, enforced on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "keyctl"

# The layers of keyctl's top-level modules, top to bottom: a module imports modules of its own layer or of
# layers below it, never above (test_imports_go_down_the_layers). docs/architecture.md draws this table
# (tests/docs/pictures.py).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("command line", ("__main__", "cli")),
    ("what the commands do", ("enroll", "audit", "doctor", "admin")),
    ("ceremonies, keys, TOTP, server", ("webauthn", "platform", "device", "totp", "server")),
    ("transports", ("hid",)),
    ("the virtual authenticator", ("authenticator",)),
    (
        "foundation",
        ("__init__", "errors", "config", "fileio", "logs", "secrets", "fido2_fixes", "fido2_speedups"),
    ),
]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "keyctl":  # from keyctl import secrets: the module keyctl.secrets
                names.update(f"keyctl.{alias.name}" for alias in node.names)
    return names


def _modules() -> list[tuple[str, set[str]]]:
    return [(str(p.relative_to(SRC)), _imports(p)) for p in sorted(SRC.rglob("*.py"))]


def _imports_any(imports: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imports if any(name == r or name.startswith(r + ".") for r in roots))


def test_the_tree_is_not_empty() -> None:
    assert len(_modules()) >= 5


def _top(name: str) -> str:
    """keyctl's top-level module a path (``webauthn/flows.py``) or a dotted name belongs to."""
    return name.removeprefix("keyctl.").replace("/", ".").split(".")[0]


def test_imports_go_down_the_layers() -> None:
    layer = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}
    tops = {_top(path) for path, _ in _modules()}
    assert tops == set(layer), "place every top-level module in LAYERS"
    upward = {
        (path, name)
        for path, imports in _modules()
        for name in _imports_any(imports, ("keyctl",))
        if name != "keyctl" and layer.get(_top(name), len(LAYERS)) < layer[_top(path)]
    }
    assert upward == set()


def test_only_cli_imports_typer_or_rich() -> None:
    offenders = {
        path: bad
        for path, imports in _modules()
        if not path.startswith("cli/") and (bad := _imports_any(imports, ("typer", "rich", "click")))
    }
    assert offenders == {}


def test_nothing_outside_cli_imports_cli() -> None:
    offenders = {
        path: bad
        for path, imports in _modules()
        if not path.startswith("cli/")
        and path != "__main__.py"
        and (bad := _imports_any(imports, ("keyctl.cli",)))
    }
    assert offenders == {}


def test_authenticator_imports_neither_hid_nor_webauthn() -> None:
    offenders = {
        path: bad
        for path, imports in _modules()
        if path.startswith("authenticator/")
        and (bad := _imports_any(imports, ("keyctl.hid", "keyctl.webauthn", "keyctl.server")))
    }
    assert offenders == {}


def test_server_shares_no_code_with_the_client_side() -> None:
    client_side = ("keyctl.webauthn", "keyctl.hid", "keyctl.authenticator")
    offenders = {
        path: bad
        for path, imports in _modules()
        if path.startswith("server/") and (bad := _imports_any(imports, client_side))
    }
    assert offenders == {}


def _authenticator_graph() -> dict[str, set[str]]:
    """Module → authenticator modules it imports anywhere (top level, functions, TYPE_CHECKING).

    ``from keyctl.authenticator import cbor`` is an edge to the submodule, not to the package.
    """
    root = SRC / "authenticator"
    names = {
        "keyctl." + ".".join(p.relative_to(SRC).with_suffix("").parts): p
        for p in root.rglob("*.py")
        if p.name != "__init__.py"
    }
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in names:
                    edges.add(node.module)
                edges.update(
                    f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names
                )
        graph[name] = edges
    return graph


def test_the_authenticator_has_no_import_cycle() -> None:
    """Commands depend on the device core, never the reverse (issue #16 item 7)."""
    graph = _authenticator_graph()
    assert "keyctl.authenticator.device" in graph["keyctl.authenticator.commands.get_assertion"]
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []
