"""The package's shape: no import cycle anywhere in gateway/, and a top level that holds only
what every stage shares (the layout of ../shared/STYLE.md §2).

Every import counts, wherever it stands — at module level, inside a function, or under
TYPE_CHECKING — since an import moved into a function to dodge a cycle is still a cycle
in the design. Importing `gateway.a.b` also runs `gateway/a/__init__.py`, so a package's
__init__ is a node of the graph too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent

# Only what every stage shares stays at the top; everything else is a stage's package.
# preflight: the checks serve and check-config share (one path, so they cannot drift apart).
TOP_MODULES = {"__init__", "__main__", "clock", "config", "errors", "model", "preflight",
               "supervisor"}
STAGE_PACKAGES = {"admin", "api", "bounces", "cleanup", "cli", "console", "core", "delivery",
                  "intake", "logs", "metrics", "policy", "scheduler", "signing", "spool", "state",
                  "tracking", "webhooks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def known_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The gateway modules `path` imports, each with the packages whose __init__ it runs."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name not in modules:
                continue
            parts = name.split(".")
            out.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    # A module's own packages ran before it did: importing a sibling adds no edge to them.
    here_parts = here.split(".")
    out.difference_update(".".join(here_parts[:i]) for i in range(1, len(here_parts) + 1))
    return {m for m in out if m in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = known_modules()
    return {name: imported(path, modules) for name, path in modules.items()}


def test_no_import_cycle_in_gateway() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The check above must be able to fail: a → b → c → a is one component.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_top_of_gateway_holds_only_what_every_stage_shares() -> None:
    top_modules = {p.stem for p in ROOT.glob("*.py")}
    top_packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert top_modules == TOP_MODULES
    assert top_packages == STAGE_PACKAGES


def test_each_stage_keeps_its_settings_in_its_own_package() -> None:
    # config.py composes; it imports each stage's settings module and no stage internals.
    config_imports = import_graph()["gateway.config"]
    stage_imports = {m for m in config_imports if m.count(".") >= 2}
    assert {m.rsplit(".", 1)[1] for m in stage_imports} <= {"settings", "yamlnodes"}
