"""The package's architecture: no import cycles (lazy imports inside functions included), drawing apart from
computing."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_keras"


def kit_imports() -> dict[str, set[str]]:
    """module -> the fer_keras modules it imports anywhere in its source (top level or inside functions)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fer_keras"):
                sub = node.module.split(".")[1:]
                deps |= {sub[0]} if sub else {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fer_keras.")}
        graph[path.stem] = deps - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep] if dep in path else [node, dep, node]
            if dep not in state and (cycle := visit(dep, path + [dep])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_in_the_package():
    graph = kit_imports()
    graph.pop("__main__", None)  # the entry point imports cli; nothing imports it
    graph.pop("__init__", None)  # the package itself (config only)
    assert find_cycle(graph) is None, find_cycle(graph)


def test_viz_only_draws_and_evaluation_only_computes():
    graph = kit_imports()
    assert graph["viz"] == set(), graph["viz"]  # drawing needs nothing from the kit
    assert "viz" not in graph["evaluation"] and "explain" not in graph["evaluation"]
