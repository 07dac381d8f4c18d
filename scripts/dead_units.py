"""Dead ReLU units in trained models' dense heads, counted on test faces (notebook 02's diagnosis of a run that
called every face one class).

    python scripts/dead_units.py runs/campaign/s004_w16/01_baseline runs/campaign/s004_w16/02_residual \\
        --data fer2013 --faces 1000 --out results/dead_units_s004_w16.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, each with model.keras (or .keras files)")
    p.add_argument("--data", default=None, help="FER2013 CSV or folder; default: $FER_KERAS_DATA")
    p.add_argument("--faces", type=int, default=1000, help="the first N PublicTest faces")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    models = [Path(r) / "model.keras" if Path(r).is_dir() else Path(r) for r in args.runs]
    for m in models:
        if not m.is_file():
            p.error(f"{m}: no such model file; give a run folder with model.keras or a .keras file")
    if args.faces < 1:
        p.error(f"--faces {args.faces}: give a whole number >= 1")
    if Path(args.out).is_dir():
        p.error(f"--out {args.out}: is a folder; give a .json file name")

    from fer_keras import data, evaluation, modelfile, provenance, training

    test = data.load_dataset(args.data, usages=["PublicTest"])["PublicTest"]
    faces = test.x[:args.faces]
    report = {"models": {str(m): evaluation.dead_units(modelfile.load_model(m).keras_model, faces) for m in models},
              "data": {"test_split": "PublicTest", "faces": len(faces), "which": f"the first {len(faces)} rows"},
              "provenance": provenance.provenance(["python", "scripts/dead_units.py"] +
                                                  (argv if argv is not None else sys.argv[1:]))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    training.atomic_write_text(args.out, json.dumps(report, indent=1))
    for m, layers in report["models"].items():
        for name, r in layers.items():
            print(f"{m} {name}: {r['dead']}/{r['units']} dead (fan-in {r['fan_in']:,}), mean pre-activation "
                  f"{r['mean_preactivation']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
