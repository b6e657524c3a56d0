"""The layering docs/architecture.md promises (issue 17 item 21, issue 19 item 5): no import circles among
imgtag's modules; the layers import downward only: cli/ -> app/ -> the stages -> config/ -> util/, and no stage
imports app/, cli/ or the API. Every import counts: top-level, inside a function (lazy) and under
`if TYPE_CHECKING:`, since each is a dependency of the design even when it is not one at start-up; only config/
may name a stage's types for a type checker (RunConfig's Target holds a Preset), as long as it never imports one."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = ("events", "export", "ingest", "presets", "pricing", "providers", "request", "review", "store", "validate")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (SRC / "imgtag").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_only(tree: ast.AST) -> set[int]:
    """The import statements under `if TYPE_CHECKING:` (ids of their nodes)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return found


def import_graph(*, types_too: bool = True) -> dict[str, set[str]]:
    """module -> the imgtag modules it imports. `from a.b import c` points at a.b.c when that is a module
    (importing a submodule is not a dependency on its package's __init__), otherwise at a.b. Without
    `types_too`, imports under `if TYPE_CHECKING:` are left out."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = set() if types_too else _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in modules else source)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_circle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_among_imgtag_modules():
    graph = import_graph()
    assert "imgtag.app.runner" in graph and graph["imgtag.cli.commands"], "the graph must see the modules and imports"
    assert cycles(graph) == []


def _layer(module: str) -> str:
    """The package a module belongs to ("cli", "app", "config", a stage's name, ...), or "" for the top level."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(graph: dict[str, set[str]], importers: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """Imports by modules of the `importers` packages of any imgtag package outside `allowed`."""
    return sorted(f"{module} imports {target}" for module, targets in graph.items() if _layer(module) in importers
                  for target in targets if _layer(target) not in allowed)


def test_no_stage_imports_the_runner_or_the_cli():
    reaching_up = {f"{module} imports {target}"
                   for module, targets in import_graph().items() if _layer(module) in STAGES
                   for target in targets if _layer(target) in ("cli", "app", "api", "review_session")}
    assert sorted(reaching_up) == []


def test_the_use_cases_never_import_the_cli():
    assert _imports(import_graph(), ("app",), ("app", "config", "util", "version", *STAGES)) == []


def test_config_and_util_sit_below_every_stage():
    assert _imports(import_graph(), ("util",), ("util",)) == []
    assert _imports(import_graph(types_too=False), ("config",), ("config", "util")) == []
    # and for type checkers it names stages' types only, nothing above them
    assert _imports(import_graph(), ("config",), ("config", "util", *STAGES)) == []


def test_no_circles_between_packages_at_run_time():
    """Package by package (cli, app, config, each stage, ...), what runs imports only downward. A type named under
    `if TYPE_CHECKING:` may point up (validate/verdict.py names the providers' ModelAnswer)."""
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph(types_too=False).items():
        packages.setdefault(_layer(module), set()).update(_layer(t) for t in targets if _layer(t) != _layer(module))
    assert {"cli", "app", "config", "util", *STAGES} <= set(packages)
    assert cycles(packages) == []
