"""Notebook 17's ablation: the speed recipe (`--step 17_speed`) with one change per run, all at one budget and
seed, each in its own `python -m fer_keras train` process (so each run's clock includes its own start-up). The
variants are `campaign.ABLATION`; they run through the campaign runner.

    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --budget 6m [--only width48 lr4e-3]

Results go to results/speedrun/ablation/<variant>.json (the model files stay under runs/). A variant whose
results file exists is skipped, so a cut campaign goes on where it stopped; --redo runs them again.
The choice is made on the validation slice; experiment.ablation_table shows it beside PublicTest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_keras import campaign
from fer_keras.cli import parse_duration

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="6m", type=parse_duration, help="the budget of every run (default 6m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", metavar="VARIANT", help=f"a subset of: {', '.join(campaign.ABLATION)}")
    p.add_argument("--results", default=str(REPO / "results" / "speedrun" / "ablation"))
    p.add_argument("--out", default="runs/speedrun/ablation", help="run folders (models, logs)")
    p.add_argument("--redo", action="store_true", help="run variants whose results file already exists")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(campaign.ABLATION))
    if unknown:
        print(f"error: --only {' '.join(unknown)}: unknown variant. Fix: choose from {', '.join(campaign.ABLATION)}",
              file=sys.stderr)
        return 2
    plan = campaign.ablation_plan(args.budget, args.seed, args.only)
    ran = campaign.run_next(float("inf"), plan, args.results, args.out, dry_run=args.dry_run, redo=args.redo)
    return 1 if any(r.get("returncode") for r in ran) else 0


if __name__ == "__main__":
    sys.exit(main())
