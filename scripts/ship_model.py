"""Ship a trained run as one of the kit's named models (`--as tiny`, the default one, or `--as accurate`, the
mid-size option that `predict --model accurate` selects): `.keras` + int8 `.tflite` into fer_keras/pretrained/,
with its measured accuracy and its name in the file's record, and the int8 numbers added to the run's results
JSON. The files shipped under that name before go; the other name's stay.

    python scripts/ship_model.py RUN_DIR RESULTS_JSON [--as tiny] [--data fer2013] [--name fer_tiny_cnn] [--tta flip]

--tta ships the model with its test-time augmentation inside (models.with_tta): `predict`, the demo and the int8
file then average its views in one call, and every number shipped with it (PublicTest accuracy, int8 size,
accuracy, ms/face) is measured on that model, in its own results file, results/shipped_<as>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_keras import config
from fer_keras.apply import SHIPPED, shipped_name

REPO = Path(__file__).resolve().parents[1]


def shipped_files(folder: Path, slot: str) -> list[Path]:
    """The files in `folder` that shipping under `slot` replaces: that name's .keras files and their int8 exports,
    .keras files the kit cannot read, and .tflite files whose .keras is gone."""
    old = []
    for path in folder.glob("*.keras"):
        try:
            mine = shipped_name(path) == slot
        except ValueError:
            mine = True  # not a kit model file: nothing ships it
        if mine:
            old += [path, path.with_name(f"{path.stem}_int8.tflite")]
    kept = {p.stem for p in folder.glob("*.keras")} - {p.stem for p in old}
    old += [t for t in folder.glob("*.tflite") if t.stem.removesuffix("_int8") not in kept]
    return sorted({p for p in old if p.is_file()})


def results_name(path) -> str:
    """A results file as the README names it: results/<path inside results/> (subfolders kept)."""
    path = Path(path).resolve()
    inside = REPO / "results"
    return f"results/{path.relative_to(inside).as_posix() if path.is_relative_to(inside) else path.name}"


def views_compared(net, shipped_test: dict, split, tta: str) -> dict:
    """The shipped file's views scored as a training run's record scores them: their probabilities averaged
    (evaluation.predict_proba) where the file averages their logits (layers.ViewMean: one graph op, int8-friendly).
    Accuracy, macro-F1, and the paired test against the shipped file's own `test` metrics (the faces each gets
    right that the other gets wrong)."""
    from fer_keras import evaluation

    probs = evaluation.evaluate_model(net, split, tta)
    return {"accuracy": probs["accuracy"], "macro_f1": probs["macro_f1"], "tta": tta, "n": probs["n"],
            "against_shipped": evaluation.paired_test_from_metrics(probs, shipped_test)}


def main(argv=None) -> int:
    from fer_keras import compress, data, modelfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("results_json")
    p.add_argument("--data", default="fer2013")
    p.add_argument("--name", help="file name stem (default: fer_<model>, e.g. fer_tiny_cnn)")
    p.add_argument("--calibration", type=int, default=500)
    p.add_argument("--as", dest="slot", choices=SHIPPED, default="tiny",
                   help="the name it ships under (default tiny); that name's old files are replaced")
    p.add_argument("--dest", default=str(REPO / "fer_keras" / "pretrained"),
                   help="where the shipped files go (default: the package's pretrained/)")
    p.add_argument("--tta", choices=config.TTA_CHOICES, default="none",
                   help="ship it with this test-time augmentation inside (default none); its numbers go to "
                        "results/shipped_<as>.json")
    p.add_argument("--results-dir", default=str(REPO / "results"), help="where --tta's results file goes")
    args = p.parse_args(argv)
    run = Path(args.run_dir)
    results = json.loads(Path(args.results_json).read_text())
    args.name = args.name or f"fer_{results['model']}"
    splits = data.load_dataset(args.data, usages=["Training", "PublicTest"])
    loaded = modelfile.load_model(run / "model.keras")
    command = ["python", "scripts/ship_model.py"] + (argv if argv is not None else sys.argv[1:])
    trained = results  # the training run's record (how and where it trained)
    if args.tta != "none":  # its own record: the wrapped model measured one call a face, as predict runs it
        from fer_keras import evaluation, models, provenance, training

        keras_model = models.with_tta(loaded.keras_model, args.tta)
        source, args.results_json = args.results_json, Path(args.results_dir) / f"shipped_{args.slot}.json"
        wrapped = modelfile.LoadedModel.from_keras(keras_model, dict(loaded.metadata) | {
            "input_size": [int(v) for v in keras_model.input_shape[1:3]], "crop": None, "tta_inside": args.tta})
        results = {k: results[k] for k in ("model", "data", "config", "epochs_run") if k in results} | {
            "run": f"shipped_{args.slot}", "tta_inside": args.tta, "source_results": results_name(source),
            "params": keras_model.count_params(), "trainable_params": models.trainable_params(keras_model),
            "test": evaluation.evaluate_model(wrapped, splits["PublicTest"]),
            "provenance": provenance.provenance(command)}
        results["test_probability_mean"] = views_compared(loaded, results["test"], splits["PublicTest"], args.tta)
        training.atomic_write_text(args.results_json, json.dumps(results, indent=1))
        loaded = wrapped
    single = results.get("test_single_crop", results["test"])  # what predict and the demo do: one call a face
    acc = single["accuracy"]
    tta = (f" one view ({results['test']['tta']} TTA {results['test']['accuracy']:.4f})"
           if results["test"].get("tta", "none") != "none" and "test_single_crop" in results else " one view")
    tta = f" ({args.tta} TTA inside the model)" if args.tta != "none" else tta
    teachers = trained["config"].get("teachers")
    teacher = (f", distilled from {', '.join(Path(t).stem for t in teachers)} (alpha "
               f"{trained['config']['distill_alpha']}, T {trained['config']['distill_temperature']})") if teachers else ""
    meta = dict(loaded.metadata) | {
        "trained_on": f"FER2013 Training ({trained['data']['train_n']} faces), {trained['epochs_run']} epochs on "
                      f"{trained['provenance']['hardware'].get('cpu_count')} CPU cores" + teacher,
        "reported_accuracy": f"PublicTest accuracy {acc:.4f}{tta}, macro-F1 {single['macro_f1']:.4f} "
                             f"(n={results['test']['n']}; {results_name(args.results_json)})",
        "commit": trained["provenance"].get("commit"), "shipped_as": args.slot}
    out = Path(args.dest)
    out.mkdir(exist_ok=True)
    for old in shipped_files(out, args.slot):
        old.unlink()
    keras_path = modelfile.save_model(loaded.keras_model, out / f"{args.name}.keras", meta)
    results = compress.record_int8(args.results_json, keras_path, out / f"{args.name}_int8.tflite",
                                   splits["Training"].x, splits["PublicTest"], args.calibration,
                                   command=command)
    int8 = results["int8"]
    print(f"shipped {keras_path.name} ({keras_path.stat().st_size / 1024:.0f} KB, acc {acc:.4f}) and {int8['file']} "
          f"({int8['kb']:.0f} KB, int8 acc {int8['accuracy']:.4f}, {int8['latency_single_thread']['median_ms']:.3f} "
          "ms/face)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
