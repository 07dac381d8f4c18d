"""CK+ cross-validation, subject-independent folds vs the seed's leaky folds, same model and recipe.

    python scripts/ckplus_cv.py --out results/ckplus_cv_small_cnn.json [--model small_cnn] [--width 16]
                                [--k 10] [--epochs 60] [--data CK+48 CSV]
    python scripts/ckplus_cv.py --out results/ckplus_cv_finetuned.json --init-from runs/.../model.keras

Writes one JSON with both schemes (per-fold accuracy, mean, std, leaked test rows per fold, provenance).
Each finished fold is kept in the run's state folder (~/.cache/fer_keras/runs/), so the same command run again
after an interruption goes on at the next fold.
With --init-from, every fold fine-tunes that model's network under a new CK+ head, and the JSON also holds
'scratch': the same network re-initialised on the subject-independent folds (what starting from FER2013 buys).
"""

from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    from fer_keras import cli, config, experiment, training

    p = cli.OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--width", type=cli._number(int, 1), default=None)
    p.add_argument("--k", type=cli._number(int, 2), default=10)
    p.add_argument("--epochs", type=cli._number(int, 1), default=None, help="default: S000's 60")
    p.add_argument("--data", default=None, help="CK+48 CSV; default: found via $FER_KERAS_DATA; 'sample'")
    p.add_argument("--init-from", default=None, help="a kit .keras model to fine-tune per fold (e.g. FER2013's best)")
    args = p.parse_args(argv)
    try:
        out_path = cli.check_output(args.out, "--out", "file")
        if args.init_from:
            from fer_keras import modelfile

            modelfile.read_metadata(args.init_from)  # a bad model file: one line, before any training
            if not args.init_from.endswith(".keras"):
                raise ValueError(f"--init-from {args.init_from}: fine-tuning needs the .keras file (a .tflite "
                                 "cannot be trained).")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = ["python", "scripts/ckplus_cv.py"] + (argv if argv is not None else sys.argv[1:])
    recipe = {"epochs": args.epochs} if args.epochs else {}
    kwargs = {"width": args.width} if args.width else None
    runs = {"subject": ("subject", False)}  # with --init-from, its from-scratch twin right after it
    runs |= {"scratch": ("subject", True)} if args.init_from else {}
    runs["leaky"] = ("leaky", False)
    state = config.run_state_dir(out_path)  # finished folds, so an interrupted run goes on at the next fold
    state.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, (scheme, fresh) in runs.items():
        r = experiment.ckplus_cv(scheme, args.k, args.model, args.data, model_kwargs=kwargs, command=command,
                                 init_from=args.init_from, fresh=fresh, state_file=state / f"{key}.json", **recipe)
        out[key] = r
        print(f"{key}: {r['mean_accuracy']:.4f} ± {r['std_accuracy']:.4f} over {args.k} folds "
              f"({r['start_from']['weights']}), leaked test rows {sum(r['leaked_test_rows'])}, "
              f"{r['train_seconds']:.0f} s", flush=True)
        training.atomic_write_text(out_path, json.dumps(summarise(out, [k for k in runs if k not in out]), indent=1))
    print(f"wrote {out_path}")
    return 0


def summarise(out: dict, pending: list[str]) -> dict:
    """The results file: every finished scheme, the gaps between them, and what is still to run (a session that
    ends between schemes leaves a file that says so; the same command goes on)."""
    out = dict(out)
    if "leaky" in out:
        out["gap_points"] = round(100 * (out["leaky"]["mean_accuracy"] - out["subject"]["mean_accuracy"]), 2)
    if "scratch" in out:
        out["transfer_gain_points"] = round(100 * (out["subject"]["mean_accuracy"]
                                                   - out["scratch"]["mean_accuracy"]), 2)
    if pending:
        out["pending"] = pending
    return out


if __name__ == "__main__":
    sys.exit(main())
