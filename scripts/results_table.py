"""Generate the README's results table from results/*.json (never typed by hand).

    python scripts/results_table.py          # rewrite the table between the README's markers
    python scripts/results_table.py --check  # exit 1 if the README's table is out of date (a test runs this)

Training runs (files with 'model' and 'test') give one row each: params, MFLOPs, test accuracy (single crop
and ten-crop when measured), macro-F1, int8 .tflite size and accuracy when measured, latency, training time,
data and hardware, and the paper's own number for that model where there is one. Other results files
(baselines, cross-validation) have their own short sections. The rendering is `fer_keras.reporting`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fer_keras.reporting import END, START
from fer_keras.reporting import render_readme as render

REPO = Path(__file__).resolve().parents[1]


def main(argv) -> int:
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} ... {END}")
        return 1
    new = text[:text.index(START)] + render() + text[text.index(END) + len(END):]
    if argv[:1] == ["--check"]:
        if new != text:
            print("README results table is out of date: run `python scripts/results_table.py`")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
