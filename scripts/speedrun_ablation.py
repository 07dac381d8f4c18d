"""Notebook 17's ablation: the speed recipe (`--step 17_speed`) with one change per run, all at one budget and
seed, each in its own `python -m fer_keras train` process (so each run's clock includes its own start-up).

    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --budget 6m [--only width48 lr4e-3]

Results go to results/speedrun/ablation/<variant>.json (the model files stay under runs/). A variant whose
results file exists is skipped, so a cut campaign goes on where it stopped; --redo runs them again.
The choice is made on the validation slice; experiment.ablation_table shows it beside PublicTest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# variant -> CLI flags added to the recipe. "baseline" is the recipe itself (notebook 17 compares against it).
VARIANTS = {
    "baseline": [],
    "width24": ["--model-arg", "width=24"],
    "width48": ["--model-arg", "width=48"],
    "batch256": ["--batch-size", "256"],
    "lr4e-3": ["--lr", "4e-3"],
    "no_label_smoothing": ["--label-smoothing", "0"],
    "no_augment": ["--augment", "none"],
    "ema": ["--ema", "0.99"],
    "deeper": ["--model-arg", "convs=[2,2,2]"],
    "head_max": ["--model-arg", "pool=max"],
}


def command(variant: str, budget: str, seed: int, out_root: Path, results: Path) -> list[str]:
    """The train command of one variant."""
    return [sys.executable, "-m", "fer_keras", "train", "--step", "17_speed", "--data", "fer2013",
            "--budget", budget, "--seed", str(seed), *VARIANTS[variant], "--out", str(out_root / variant),
            "--results-json", str(results / f"{variant}.json"), "--restart"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="6m", help="the budget of every run (default 6m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", metavar="VARIANT", help=f"a subset of: {', '.join(VARIANTS)}")
    p.add_argument("--results", default=str(REPO / "results" / "speedrun" / "ablation"))
    p.add_argument("--out", default="runs/speedrun/ablation", help="run folders (models, logs)")
    p.add_argument("--redo", action="store_true", help="run variants whose results file already exists")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(VARIANTS))
    if unknown:
        print(f"error: --only {' '.join(unknown)}: unknown variant. Fix: choose from {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    results = Path(args.results)
    for variant in args.only or VARIANTS:
        cmd = command(variant, args.budget, args.seed, Path(args.out), results)
        if (results / f"{variant}.json").exists() and not args.redo:
            print(f"{variant}: done before, skipped ({results / f'{variant}.json'})")
            continue
        print(" ".join(cmd[1:]), flush=True)
        if args.dry_run:
            continue
        done = subprocess.run(cmd, cwd=REPO, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
        if done.returncode != 0:
            print(f"error: {variant} failed (exit {done.returncode}); the others go on", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
