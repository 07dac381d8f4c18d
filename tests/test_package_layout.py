"""The package's architecture: no import cycles (lazy imports inside functions included), drawing apart from
computing."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_keras"


def module_name(path: Path) -> str:
    """fer_keras/viz.py -> 'viz'; fer_keras/data/files.py -> 'data.files'; fer_keras/data/__init__.py -> 'data'."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def kit_imports() -> dict[str, set[str]]:
    """module -> the fer_keras modules it imports anywhere in its source (top level or inside functions).
    Subpackages count: `from fer_keras.data.files import X` is an edge to 'data.files'."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {}
    for path in paths:
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fer_keras"):
                assert node.level == 0, f"{path}: relative import"
                sub = ".".join(node.module.split(".")[1:])
                for alias in node.names:  # `from fer_keras import data` or `from fer_keras.data import files`
                    name = f"{sub}.{alias.name}" if sub else alias.name
                    deps.add(name if name in modules else sub)
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("fer_keras.")}
        me = module_name(path)
        graph[me] = {d for d in deps if d and d in modules} - {me}
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


def test_the_layout_walk_sees_subpackages():
    graph = kit_imports()
    assert {"data", "data.files", "data.fer2013", "data.ferplus", "data.ckplus", "data.labels",
            "data.splits"} <= set(graph)
    assert graph["data.files"] == {"config"}  # the floor of the data package
    assert "data.files" in graph["data.fer2013"] and "data" in graph["training"]


def test_data_modules_never_import_the_rest_of_the_kit():
    graph = kit_imports()
    allowed = {"config"} | {m for m in graph if m.startswith("data.")}
    for name in [m for m in graph if m == "data" or m.startswith("data.")]:
        assert graph[name] <= allowed, (name, graph[name] - allowed)


def readme_module_map() -> list[tuple[str, set[str] | None]]:
    """The README's package map, in its order: (module, the imports its brackets name; None for 'any')."""
    import re

    text = (PACKAGE.parent / "README.md").read_text()
    block = text[text.index("## Package layout"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("```")]
    entries = re.findall(r"^  ([\w/]+)\.py\s.*?\[imports: ([^\]]*)\]", block, re.S | re.M)
    out = []
    for path, names in entries:
        name = path.replace("/__init__", "").replace("/", ".")
        names = " ".join(names.split())
        out.append((name, None if names == "any" else set() if names == "-" else set(names.split(", "))))
    return out


def test_the_readme_module_map_is_the_code():
    graph = kit_imports()
    graph.pop("__main__", None)
    graph.pop("__init__", None)
    listed = readme_module_map()
    assert sorted(name for name, _ in listed) == sorted(graph)  # every module once, no stale line
    seen = set()
    for name, declared in listed:
        if declared is not None:
            assert graph[name] == declared, (name, "imports", sorted(graph[name]), "README says", sorted(declared))
            assert declared <= seen, (name, "imports a module listed below it", declared - seen)
        seen.add(name)
    assert listed[-1][0] == "cli"  # only the top floor may import anything
