"""Notebook housekeeping: render numbers from results/, strip outputs, emit exercise twins, lint headers.

    python scripts/notebooks.py build   # render results blocks, strip notebooks/*.ipynb, regenerate exercises/
    python scripts/notebooks.py check   # exit 1 if anything is out of sync or a header is malformed

Solutions are authored once, in notebooks/, between `# BEGIN SOLUTION` and `# END SOLUTION`; the twin
in exercises/ gets a `# TODO` and `raise NotImplementedError` there. Outputs are stripped except in
cells marked `# NBVAL_CHECK_OUTPUT` (nbval compares those, in smoke mode). Markdown results blocks
(`<!-- results:... -->`) are re-rendered from results/*.json (fer_keras.reporting), so `check` fails when a
notebook's numbers and the files disagree.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

from fer_keras import reporting

REPO = Path(__file__).resolve().parents[1]
HEADER_FIELDS = ("**Builds on:**", "**New idea:**", "**Accelerator:**", "**Runtime:**", "**Last modified:**")
BADGE = "colab.research.google.com/github/"
SOLUTION = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION\n.*?^[ \t]*# END SOLUTION\n?", re.MULTILINE | re.DOTALL)


def _source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def strip(nb: dict) -> dict:
    """Copy of `nb` without outputs/execution counts, except NBVAL_CHECK_OUTPUT cells keep outputs."""
    nb = copy.deepcopy(nb)
    checked = 0
    for cell in nb["cells"]:
        cell.setdefault("metadata", {}).pop("execution", None)
        if cell["cell_type"] != "code":
            continue
        count = None
        if "# NBVAL_CHECK_OUTPUT" in _source(cell) and cell.get("outputs"):
            checked += 1
            count = checked  # nbval needs a count on reference cells; keep it stable
        else:
            cell["outputs"] = []
        cell["execution_count"] = count
        for out in cell.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = count
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def render_numbers(nb: dict, results_dir=None) -> dict:
    """Copy of `nb` with every markdown results block re-rendered from the results files."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and "<!-- results:" in (text := _source(cell)):
            _set_source(cell, reporting.render_markdown(text, results_dir or REPO / "results"))
    return nb


def exercise_twin(nb: dict) -> dict:
    """The student twin: solutions replaced by TODO stubs, every output removed."""
    twin = strip(nb)
    for cell in twin["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            text = SOLUTION.sub(lambda m: f"{m['indent']}# TODO: your code here\n"
                                          f"{m['indent']}raise NotImplementedError(\"exercise\")\n", _source(cell))
            _set_source(cell, text)
    first = twin["cells"][0]
    _set_source(first, _source(first).replace("/notebooks/", "/exercises/", 1))
    return twin


def header_problems(nb: dict, name: str) -> list[str]:
    """STYLE rule 2: H1 title, one-sentence description, the five fields, a Colab badge."""
    problems = []
    first = nb["cells"][0]
    text = _source(first)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if first["cell_type"] != "markdown" or not lines or not lines[0].startswith("# "):
        return [f"{name}: first cell must be markdown starting with an H1 title"]
    desc = lines[1] if len(lines) > 1 else ""
    if not (desc[:1].isupper() and desc.endswith(".") and len(desc) < 100):
        problems.append(f"{name}: description line must be capitalised, end with a period, < 100 chars: {desc!r}")
    problems += [f"{name}: header lacks {field}" for field in HEADER_FIELDS if field not in text]
    if BADGE not in text or name not in text:
        problems.append(f"{name}: header lacks a Colab badge pointing at this notebook")
    return problems


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def plan() -> dict[Path, str]:
    """Every file the build would write, with its content."""
    files = {}
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = render_numbers(json.loads(path.read_text()))
        files[path] = _dump(strip(nb))
        files[REPO / "exercises" / path.name] = _dump(exercise_twin(nb))
    return files


def check() -> list[str]:
    problems = []
    for path, content in plan().items():
        if not path.exists() or path.read_text() != content:
            problems.append(f"{path.relative_to(REPO)} is out of sync: run `python scripts/notebooks.py build`")
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        problems += header_problems(json.loads(path.read_text()), path.name)
    twins = {p.name for p in (REPO / "exercises").glob("*.ipynb")}
    problems += [f"exercises/{n} has no solution notebook" for n in sorted(twins - {p.name for p in plan()})]
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        for path, content in plan().items():
            path.parent.mkdir(exist_ok=True)
            path.write_text(content)
        return 0
    if argv[:1] == ["check"]:
        problems = check()
        print("\n".join(problems) or "notebooks and exercises in sync")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
