"""Model files that carry their own preprocessing: `.keras` and `.tflite` with a `fer_keras.json` record.

The record (class names, label set, input size, scaling, crop) lets `evaluate`, `predict` and the demo
use any model the kit saves without being told how it was trained.
- `.keras`: the record is an extra `fer_keras.json` entry in the zip; Keras ignores it when loading.
- `.tflite`: the record is appended after the flatbuffer as JSON + 8-byte length + b"FERKMETA";
  interpreters read only the flatbuffer.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_keras import config

META_NAME = "fer_keras.json"
TFLITE_MAGIC = b"FERKMETA"


class ModelFileError(ValueError):
    """A model file is missing, truncated or not a kit model; the message says what to do."""


def make_metadata(keras_model, label_set: str = "fer2013", class_names=None, **extra) -> dict:
    """The preprocessing record for `keras_model` (input H, W taken from the model itself)."""
    from fer_keras import __version__

    names = list(class_names or config.LABEL_SETS[label_set])
    _, h, w, c = keras_model.input_shape
    n_out = keras_model.output_shape[-1]
    if n_out != len(names):
        raise ValueError(f"model has {n_out} outputs but label set {label_set!r} has {len(names)} classes.")
    meta = {
        "fer_keras_version": __version__,
        "class_names": names,
        "label_set": label_set,
        "input_size": [int(h), int(w)],
        "channels": int(c),
        "image_size": config.IMAGE_SIZE,
        "scaling": "grey 0-255 in; the model rescales inside",
        "crop": "center" if h < config.IMAGE_SIZE else None,
        "outputs": "logits",
    }
    meta.update(extra)
    return meta


def save_model(model, path: str | os.PathLike, metadata: dict) -> Path:
    """Save `model` as `.keras` with the preprocessing record inside."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: save as a .keras file (use compress.export_tflite for .tflite).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.keras")  # written whole, then renamed: never half a model
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(META_NAME, json.dumps(metadata, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def attach_tflite_metadata(flatbuffer: bytes, metadata: dict) -> bytes:
    """A .tflite flatbuffer with the record appended (JSON, length, magic)."""
    blob = json.dumps(metadata).encode()
    return flatbuffer + blob + len(blob).to_bytes(8, "little") + TFLITE_MAGIC


MAX_RECORD_BYTES = 1_000_000  # a record is ~1 KB; a length field beyond this is corruption, not a record


def read_metadata(path: str | os.PathLike) -> dict:
    """The preprocessing record of a kit `.keras` or `.tflite` file, checked (check_metadata)."""
    path = _check_file(path)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as zf:
                if META_NAME not in zf.namelist():
                    raise ModelFileError(f"{path}: a Keras file without the fer_keras record. Fix: re-save it with "
                                         "fer_keras.modelfile.save_model(model, path, make_metadata(model)).")
                if zf.getinfo(META_NAME).file_size > MAX_RECORD_BYTES:
                    raise ModelFileError(f"{path}: its fer_keras record is implausibly large. Fix: re-save it.")
                raw = zf.read(META_NAME)
        except zipfile.BadZipFile as err:
            raise ModelFileError(f"{path}: not a readable .keras zip (truncated or corrupt download?). "
                                 "Fix: copy or download the file again.") from err
    else:
        data = path.read_bytes()
        if data[-8:] != TFLITE_MAGIC:
            raise ModelFileError(f"{path}: a .tflite file without the fer_keras record. Fix: export it with "
                                 "`python -m fer_keras export`, which appends the record.")
        n = int.from_bytes(data[-16:-8], "little")
        if not 0 < n <= min(MAX_RECORD_BYTES, len(data) - 16):
            raise ModelFileError(f"{path}: the fer_keras record's length field ({n:,} bytes) does not fit the file "
                                 "(damaged?). Fix: export the model again.")
        raw = data[-16 - n:-16]
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: the fer_keras record is not valid JSON ({err}). Fix: re-save or export the "
                             "model again.") from err
    return check_metadata(meta, path)


def check_metadata(meta, path="<model>") -> dict:
    """The record's required keys and their types and ranges; one line naming the file when something is off."""
    def bad(what):
        return ModelFileError(f"{path}: its fer_keras record {what}. Fix: re-save the model with "
                              "fer_keras.modelfile.save_model(model, path, make_metadata(model)).")

    if not isinstance(meta, dict):
        raise bad("is not a JSON object")
    missing = [k for k in ("class_names", "input_size") if k not in meta]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    names = meta["class_names"]
    if (not isinstance(names, list) or not 2 <= len(names) <= 1000
            or not all(isinstance(n, str) and 0 < len(n) <= 100 for n in names) or len(set(names)) != len(names)):
        raise bad("has class_names that are not 2 to 1000 distinct short names")
    size = meta["input_size"]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 1024 for v in size)):
        raise bad(f"has input_size {size!r}, not [height, width] in pixels")
    if meta.get("channels", 1) not in (1, 3):
        raise bad(f"has channels {meta.get('channels')!r}, not 1 or 3")
    return meta


def check_against_network(meta: dict, input_shape, output_shape, path="<model>") -> None:
    """The record must describe the network it travels with: as many class names as outputs, the same input."""
    n_out, (h, w) = int(output_shape[-1]), meta["input_size"]
    if n_out != len(meta["class_names"]):
        raise ModelFileError(f"{path}: the network has {n_out} outputs but its record names "
                             f"{len(meta['class_names'])} classes, so every per-class number would be mislabelled. "
                             "Fix: re-save it with make_metadata(model, label_set) for the labels it was trained on.")
    if tuple(int(v) for v in input_shape[1:3]) != (h, w):
        raise ModelFileError(f"{path}: the network takes {tuple(input_shape[1:3])} inputs but its record says "
                             f"{h}x{w}. Fix: re-save it with make_metadata(model).")


def _check_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found. Fix: check the path, or train one with "
                             "`python -m fer_keras train`.")
    if path.suffix not in (".keras", ".tflite"):
        hint = (" JSON + H5 pairs from older Keras (model.to_json + save_weights) cannot be loaded across "
                "versions; rebuild the architecture in code, load the weights, then save as .keras."
                if path.suffix in (".h5", ".json", ".hdf5") else "")
        raise ModelFileError(f"{path}: unsupported model file; the kit reads .keras and .tflite.{hint}")
    return path


@dataclass
class LoadedModel:
    """A model ready for inference: predict(x float32 (N,H,W,1) in 0-255) -> logits (N, C)."""

    path: Path
    metadata: dict
    predict: Callable[[np.ndarray], np.ndarray]
    keras_model: object = None

    @classmethod
    def from_keras(cls, model, metadata: dict, path=None, batch_size: int = 256) -> LoadedModel:
        """Wrap an in-memory Keras model (predict returns numpy logits)."""
        def predict(x):  # one small batch: predict_on_batch skips predict()'s per-call set-up
            if len(x) <= batch_size:
                return np.asarray(model.predict_on_batch(x))
            return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))

        return cls(Path(path) if path else None, metadata, predict, model)


def load_model(path: str | os.PathLike, batch_size: int = 256) -> LoadedModel:
    """Load a kit `.keras` (safe mode on) or `.tflite` file with its preprocessing record."""
    path = _check_file(path)
    meta = read_metadata(path)
    if path.suffix == ".keras":
        import keras

        import fer_keras.layers  # noqa: F401  (registers the kit's custom layers)

        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as err:  # Keras raises many types here; one clear message instead
            import re

            unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(err))
            if unknown:
                raise ModelFileError(f"{path}: the model uses a custom layer Keras does not know, "
                                     f"{unknown.group(1)!r}. Fix: import the code that defines it (decorated with "
                                     "@keras.saving.register_keras_serializable) before loading.") from err
            raise ModelFileError(f"{path}: Keras could not load it ({type(err).__name__}: {str(err)[:200]}). "
                                 "Fix: re-download the file; if it was saved by another Keras version, "
                                 "re-save it there as .keras.") from err
        check_against_network(meta, model.input_shape, model.output_shape, path)
        return LoadedModel.from_keras(model, meta, path, batch_size)
    return LoadedModel(path, meta, tflite_predictor(path, meta))


def tflite_predictor(path: Path, meta: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Batch predict through the LiteRT interpreter, one face at a time, (de)quantizing int8 I/O. meta: the
    kit's record, checked against the network; None for a .tflite from elsewhere (e.g. PyPI `fer`'s)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - TF's deprecated interpreter as fallback
        from tensorflow.lite.python.interpreter import Interpreter
    try:
        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: not a valid TFLite model ({err}). Fix: export it again.") from err
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if meta is not None:
        check_against_network(meta, inp["shape"], out["shape"], path)

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        scale, zero = inp["quantization"]
        if inp["dtype"] != np.float32:
            x = np.clip(np.round(x / scale + zero), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
        results = []
        for face in x.astype(inp["dtype"]):
            interp.set_tensor(inp["index"], face[None])
            interp.invoke()
            results.append(interp.get_tensor(out["index"])[0])
        y = np.array(results, np.float32)
        o_scale, o_zero = out["quantization"]
        return (y - o_zero) * o_scale if out["dtype"] != np.float32 else y

    return predict
