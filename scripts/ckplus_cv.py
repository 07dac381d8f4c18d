"""CK+ cross-validation, subject-independent folds vs the seed's leaky folds, same model and recipe.

    python scripts/ckplus_cv.py --out results/ckplus_cv_small_cnn.json [--model small_cnn] [--width 16]
                                [--k 10] [--epochs 60] [--data CK+48 CSV]

Writes one JSON with both schemes (per-fold accuracy, mean, std, leaked test rows per fold, provenance).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



def main(argv=None) -> int:
    from fer_keras import experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--epochs", type=int, default=None, help="default: S000's 60")
    p.add_argument("--data", default=None, help="CK+48 CSV; default: found via $FER_KERAS_DATA; 'sample'")
    args = p.parse_args(argv)
    command = ["python", "scripts/ckplus_cv.py"] + (argv if argv is not None else sys.argv[1:])
    recipe = {"epochs": args.epochs} if args.epochs else {}
    kwargs = {"width": args.width} if args.width else None
    out = {}
    for scheme in ("subject", "leaky"):
        r = experiment.ckplus_cv(scheme, args.k, args.model, args.data, model_kwargs=kwargs, command=command,
                                 **recipe)
        out[scheme] = r
        print(f"{scheme}: {r['mean_accuracy']:.4f} ± {r['std_accuracy']:.4f} over {args.k} folds, "
              f"leaked test rows {sum(r['leaked_test_rows'])}, {r['train_seconds']:.0f} s", flush=True)
    out["gap_points"] = round(100 * (out["leaky"]["mean_accuracy"] - out["subject"]["mean_accuracy"]), 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"leaky - subject = {out['gap_points']} points; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
