"""Notebook 17's ablation: the speed recipe (`--step 17_speed`) with one change per run, all at one budget and
seed, each in its own `python -m fer_keras train` process (so each run's clock includes its own start-up). The
variants are `campaign.ABLATION`; they run through the campaign runner.

    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --budget 6m [--only width48 lr4e-3]
    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --set long   # regularisers, 30 min each
    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --set long_erase   # each one on top of erasing
    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --set distill   # issue 18's T and alpha, 8 min each
    FER_KERAS_CONCURRENT=nothing python scripts/speedrun_ablation.py --set mix   # mixup or CutMix on erasing, 30 min

Results go to results/speedrun/ablation/<variant>.json (`--set long`: the hour run's regularisers,
campaign.LONG_ABLATION, on a CPU with native bf16, to results/speedrun/amx/ablation_long/; `--set long_erase`: the
other regularisers each added to random erasing, campaign.LONG_ERASE_ABLATION, to the same folder, whose
`long_erase.json` is the baseline of both sets; `--set distill`: the width-18 student alone and distilled at five
temperature/alpha pairs, campaign.DISTILL_SWEEP, on the AVX512-BF16 EPYC, to results/distill/avx512_bf16/sweep_t_alpha/;
`--set mix`: mixup and CutMix each added to the erasing run, campaign.MIX_ABLATION, against that run on the EPYC, to
results/speedrun/avx512_bf16/ablation_long/); the model files stay under runs/. A variant whose results file exists
is skipped, so a cut campaign goes on where it stopped; --redo runs them again. The choice is made on the validation
slice; experiment.ablation_table shows it beside PublicTest.
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
    p.add_argument("--set", default="recipe", choices=sorted(campaign.ABLATIONS),
                   help="recipe: one change to the speed recipe each (default); long: regularisers on the hour run; "
                        "long_erase: the other regularisers on top of random erasing; distill: the width-18 "
                        "student's distillation temperature and alpha; mix: mixup or CutMix on top of erasing")
    p.add_argument("--budget", type=parse_duration, help="the budget of every run (default 6m; --set long, "
                                                           "long_erase and mix: 30m; --set distill: 8m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="a subset of the set's variants: "
                   + "; ".join(f"{k}: {', '.join(v[0])}" for k, v in campaign.ABLATIONS.items()))
    p.add_argument("--results", help="results folder (default results/speedrun/ablation, --set long and "
                                     "long_erase: results/speedrun/amx/ablation_long, --set distill: "
                                     "results/distill/avx512_bf16/sweep_t_alpha, --set mix: "
                                     "results/speedrun/avx512_bf16/ablation_long)")
    p.add_argument("--out", help="run folders (models, logs; default runs/ and the results folder's path)")
    p.add_argument("--redo", action="store_true", help="run variants whose results file already exists")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    variants, _, budget, folder = campaign.ABLATIONS[args.set]
    unknown = sorted(set(args.only or []) - set(variants))
    if unknown:
        print(f"error: --only {' '.join(unknown)}: unknown variant of --set {args.set}. Fix: choose from "
              f"{', '.join(variants)}", file=sys.stderr)
        return 2
    plan = campaign.ablation_plan(args.budget or parse_duration(budget), args.seed, args.only, args.set)
    results, out = args.results or str(REPO / "results" / folder), args.out or f"runs/{folder}"
    ran = campaign.run_next(float("inf"), plan, results, out, dry_run=args.dry_run, redo=args.redo)
    return 1 if any(r.get("returncode") for r in ran) else 0


if __name__ == "__main__":
    sys.exit(main())
