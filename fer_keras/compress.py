"""TFLite export (post-training quantization). Needs the TensorFlow backend's converter.

Modes: 'float32', 'dynamic' (int8 weights), 'float16', 'int8' (full integer, int8 input and output,
calibrated on representative training faces). The exported file carries the kit's record.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fer_keras import data, modelfile

TFLITE_MODES = ("float32", "dynamic", "float16", "int8")


def export_tflite(model_path, out_path, mode: str = "int8", representative: np.ndarray | None = None,
                  calibration_size: int = 200, seed: int = 0) -> Path:
    """Convert a kit `.keras` file to `.tflite`. representative: uint8 faces (N, 48, 48) for int8
    calibration (default: the bundled sample's Training faces); `calibration_size` of them are used."""
    if mode not in TFLITE_MODES:
        raise ValueError(f"mode {mode!r}: choose one of {TFLITE_MODES}")
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
        faces = representative if representative is not None else data.load_sample(["Training"])["Training"].x
        size = meta["input_size"][0]
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(faces), min(calibration_size, len(faces)), replace=False)
        from fer_keras.augment import center_crop

        calib = data.to_model_input(center_crop(faces[pick], size) if size < faces.shape[1] else faces[pick])

        def representative_dataset():
            for face in calib:
                yield [face[None]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError and others with long MLIR logs
        raise ValueError(f"{model_path}: TFLite conversion ({mode}) failed: {str(err).splitlines()[0][:300]}. "
                         "Fix: an op without a TFLite kernel in this mode; try 'dynamic' or 'float16', or see "
                         "the layer named above.") from err
    meta["tflite_mode"] = mode
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(modelfile.attach_tflite_metadata(flatbuffer, meta))
    return out
