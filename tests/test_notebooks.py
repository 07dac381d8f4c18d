"""Notebook hygiene: twins in sync, headers linted, each checker accepts the solution and rejects the stub.
(The notebooks themselves run under nbval in smoke mode: pytest collects notebooks/*.ipynb.)"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fer_keras import checks

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("notebook_tools", REPO / "scripts" / "notebooks.py")
tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tools)

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_stripped_twins_in_sync_headers_linted():
    assert NOTEBOOKS, "no notebooks found"
    assert tools.check() == []


def test_header_lint_catches_problems():
    nb = {"cells": [{"cell_type": "markdown", "source": "# Title\n\nno capital and no period"}]}
    problems = tools.header_problems(nb, "99_x.ipynb")
    assert any("description" in p for p in problems) and any("Builds on" in p for p in problems)


def _exercises(nb):
    """(exercise cell source, checker cell source) pairs."""
    cells = [("".join(c["source"]), c["cell_type"]) for c in nb["cells"]]
    pairs = []
    for (src, kind), (nxt, _) in zip(cells, cells[1:]):
        if kind == "code" and ("BEGIN SOLUTION" in src or "NotImplementedError" in src):
            assert nxt.startswith("checks.check_"), f"exercise cell not followed by a checker: {src[:60]}"
            pairs.append((src, nxt))
    return pairs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checkers_accept_solutions_and_reject_stubs(path, capsys):
    solution = json.loads(path.read_text())
    twin = json.loads((REPO / "exercises" / path.name).read_text())
    solved, blanks = _exercises(solution), _exercises(twin)
    assert len(solved) == len(blanks) >= 1
    for (sol, checker), (stub, checker2) in zip(solved, blanks):
        assert checker == checker2
        ns = {"np": np, "checks": checks}
        exec(sol, ns)
        exec(checker, ns)  # must pass
        ns = {"np": np, "checks": checks}
        exec(stub, ns)
        with pytest.raises((NotImplementedError, AssertionError)):
            exec(checker, ns)
    assert "correct" in capsys.readouterr().out
