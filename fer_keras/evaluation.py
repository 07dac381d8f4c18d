"""Evaluation: predictions (single, flip or ten-crop), scikit-learn metrics, the evaluate contract.

`evaluate_file(MODEL, data, split)` works for any `.keras` or `.tflite` file the kit saves and
returns at least accuracy, macro_f1, per_class, confusion_matrix, n and ten_crop; `evaluate_files` scores
several as one ensemble.
"""

from __future__ import annotations

import os

import numpy as np

from fer_keras import augment, config, data, modelfile


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def predict_proba(predict, x: np.ndarray, input_size: int, tta: str = "none") -> np.ndarray:
    """Class probabilities (N, C) for uint8 faces (N, 48, 48).

    predict: logits function (e.g. LoadedModel.predict or keras_model.predict).
    tta: 'none' (centre crop if input_size < 48), 'flip' (average with the mirror image),
    'ten_crop' (4 corners + centre, each mirrored; needs input_size < 48).
    """
    x = np.asarray(x)
    if x.ndim != 3 and not (x.ndim == 4 and x.shape[-1] == 1):
        raise ValueError(f"faces of shape {x.shape}: expected uint8 (N, H, W) grey faces.")
    if tta == "ten_crop":
        views = augment.ten_crops(x, input_size)
    else:
        base = augment.center_crop(x, input_size) if input_size < x.shape[1] else x
        if base.shape[1] != input_size:
            raise ValueError(f"faces are {x.shape[1]}x{x.shape[2]} but the model expects {input_size}x{input_size}. "
                             "Fix: resize the faces (apply.prepare_faces) or use a model for this size.")
        views = np.stack([base, base[:, :, ::-1]]) if tta == "flip" else base[None]
    return np.mean([softmax(predict(data.to_model_input(v))) for v in views], axis=0)


def binary_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Keras' 'accuracy' under binary_crossentropy (S004's metric): thresholded one-hot agreement over
    all N x C entries. All-zero predictions already score (C-1)/C, about 0.857 for 7 classes."""
    onehot = np.eye(probs.shape[1])[y_true]
    return float(np.mean((probs > 0.5) == onehot))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_names) -> dict:
    """accuracy, macro_f1, per_class {name: precision, recall, f1, support}, confusion_matrix, n."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = data.hard_labels(y_true)
    labels = np.arange(len(class_names))
    y_pred = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])} for i, name in enumerate(class_names)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "n": len(y_true),
    }


def evaluate_model(loaded: modelfile.LoadedModel, split: data.Split, tta: str = "none") -> dict:
    """Metrics of a loaded kit model on one split (labels must match its label set)."""
    meta = loaded.metadata
    probs = predict_proba(loaded.predict, split.x, meta["input_size"][0], tta)
    metrics = classification_metrics(split.y, probs, meta["class_names"])
    y_hard = data.hard_labels(split.y)
    metrics["binary_accuracy_s004"] = binary_accuracy(y_hard, probs)
    metrics["ten_crop"] = tta == "ten_crop"
    metrics["tta"] = tta
    # Per face, in split order: so that two runs' files alone give a paired test (paired_test_from_metrics).
    metrics["y_true"], metrics["y_pred"] = encode_classes(y_hard), encode_classes(probs.argmax(axis=1))
    return metrics


def evaluate_files(model_paths, source="sample", split="PublicTest", tta="none") -> dict:
    """`evaluate_file` for one model; for several, their ensemble: the members' logits averaged (the signal a
    student distils from, training.teacher_logits), then the TTA views' probabilities averaged as for one model.
    The ensemble's metrics, with each member's own under 'members' ({path: metrics}). Members must share the
    label set and input size; otherwise one clear error names the one that differs. Each model and the split are
    loaded once."""
    paths = [str(p) for p in model_paths]
    if len(paths) == 1:
        return evaluate_file(paths[0], source, split, tta)
    if len(set(paths)) < len(paths):
        raise ValueError(f"{' '.join(paths)}: a model is named twice. Fix: name each ensemble member once.")
    loaded = [modelfile.load_model(p) for p in paths]
    first = loaded[0].metadata
    for p, m in zip(paths, loaded):
        _check_fer_label_set(p, m.metadata)
        for key in ("class_names", "input_size"):
            if m.metadata.get(key) != first.get(key):
                raise ValueError(f"{p}: its {key} {m.metadata.get(key)} differs from {paths[0]}'s {first.get(key)}. "
                                 "Fix: ensemble models of one label set and input size.")
    label_set = first.get("label_set", "fer2013")
    test = data.load_dataset(source, label_set, usages=[split])[split]
    members = {p: evaluate_model(m, test, tta) for p, m in zip(paths, loaded)}
    ensemble = modelfile.LoadedModel(None, first, lambda v: np.mean([m.predict(v) for m in loaded], axis=0))
    return evaluate_model(ensemble, test, tta) | {
        "model_files": paths, "data": str(source), "split": split, "label_set": label_set, "members": members,
        "ensemble": "mean of the members' logits per view"}


def encode_classes(y) -> str:
    """Class indices (< 10) as one digit per face: '3046...' (a few KB in a results JSON for a test split)."""
    y = np.asarray(y, np.int64)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError("encode_classes takes class indices 0-9")
    return "".join(map(str, y.tolist()))


def decode_classes(text: str) -> np.ndarray:
    """The inverse of encode_classes."""
    return np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int64) - ord("0")


def _check_fer_label_set(model_path, metadata: dict) -> str:
    """The model's label set, refused in one line unless it is FER2013's or a FER+ one."""
    label_set = metadata.get("label_set", "fer2013")
    if label_set not in ("fer2013",) + tuple(config.CONTEMPT_MERGE):
        raise ValueError(f"{model_path}: label set {label_set!r} is not a FER2013/FER+ label set "
                         "(CK+ models are evaluated per fold in notebook 14).")
    return label_set


def evaluate_file(model_path, source="sample", split="PublicTest", tta="none") -> dict:
    """The `evaluate` contract: any kit .keras/.tflite file on one official split of `source`
    ('sample', a FER2013 CSV or folder, or None for the full data); labels follow the model's label set."""
    loaded = modelfile.load_model(model_path)
    label_set = _check_fer_label_set(model_path, loaded.metadata)
    splits = data.load_dataset(source, label_set, usages=[split])
    metrics = evaluate_model(loaded, splits[split], tta)
    metrics.update({"model_file": str(model_path), "data": str(source), "split": split,
                    "label_set": label_set})
    return metrics


def cross_label_metrics(loaded: modelfile.LoadedModel, split: data.Split, target_label_set: str,
                        tta: str = "none") -> dict:
    """Score a model on faces labelled in another label set, matching classes by name: a prediction counts
    when its class name equals the face's label, so a 7-class model is never right on a contempt face.
    This puts models trained on FER2013, FER+ or FERm labels on one test set (e.g. FER+ majority)."""
    from sklearn.metrics import f1_score, recall_score

    target = list(config.LABEL_SETS[target_label_set])
    names = loaded.metadata["class_names"]
    probs = predict_proba(loaded.predict, split.x, loaded.metadata["input_size"][0], tta)
    pred = np.array([target.index(names[i]) if names[i] in target else -1 for i in probs.argmax(axis=1)])
    y = data.hard_labels(split.y)
    labels = np.arange(len(target))
    recall = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    return {"accuracy": float(np.mean(pred == y)),
            "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
            "recall": {name: float(r) for name, r in zip(target, recall)}, "n": len(y),
            "label_set": target_label_set, "model_classes": list(names), "tta": tta}


def report(model, source="sample", split="PublicTest", tta="none", label_set="fer2013") -> dict:
    """Confusion matrix and per-class report for any model in one call.

    model: a kit .keras/.tflite path, a LoadedModel, or an in-memory Keras model (label_set names its
    classes). Returns the metrics dict plus 'text' (scikit-learn's classification_report). Computes only:
    experiment.write_metrics_report writes per_class.csv and confusion_matrix.png from the result.
    """
    from sklearn.metrics import classification_report

    if isinstance(model, (str, os.PathLike)):
        loaded = modelfile.load_model(model)
    elif isinstance(model, modelfile.LoadedModel):
        loaded = model
    else:
        loaded = modelfile.LoadedModel.from_keras(model, modelfile.make_metadata(model, label_set))
    label_set = loaded.metadata.get("label_set", label_set)
    test = data.load_dataset(source, label_set, usages=[split])[split]
    probs = predict_proba(loaded.predict, test.x, loaded.metadata["input_size"][0], tta)
    names = loaded.metadata["class_names"]
    metrics = classification_metrics(test.y, probs, names) | {"tta": tta, "split": split, "data": str(source)}
    y = data.hard_labels(test.y)
    metrics["text"] = classification_report(y, probs.argmax(axis=1), labels=np.arange(len(names)),
                                            target_names=names, digits=3, zero_division=0)
    return metrics


def paired_test(y_true, pred_a, pred_b) -> dict:
    """Exact McNemar test of two models scored on the same faces (scipy's two-sided binomial test on the faces
    exactly one of them gets right). A gap in accuracy on one test split is only worth quoting with its p."""
    from scipy.stats import binomtest

    y, a, b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    a_ok, b_ok = a == y, b == y
    only_a, only_b = int(np.sum(a_ok & ~b_ok)), int(np.sum(b_ok & ~a_ok))
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"n": len(y), "accuracy_a": float(a_ok.mean()), "accuracy_b": float(b_ok.mean()),
            "delta_pt": 100 * float(b_ok.mean() - a_ok.mean()), "only_a_right": only_a, "only_b_right": only_b,
            "p_value": float(p), "test": "exact McNemar (binomial on discordant faces), two-sided"}


def paired_test_from_metrics(a: dict, b: dict) -> dict | None:
    """paired_test of two runs from their saved metrics (evaluate_model's y_true/y_pred), or None when either
    lacks them or they were not scored on the same faces."""
    if not all(k in m for m in (a, b) for k in ("y_true", "y_pred")) or a["y_true"] != b["y_true"]:
        return None
    return paired_test(decode_classes(a["y_true"]), decode_classes(a["y_pred"]), decode_classes(b["y_pred"]))


def latency_ms(predict, input_size: int, runs: int = 50, warmup: int = 5, channels: int = 1) -> dict:
    """Latency of one face (batch 1): median and p90 in ms over `runs` calls after `warmup` calls.

    predict: any logits function of (1, S, S, channels) float32, e.g. keras_model.predict_on_batch or a
    LoadedModel's predict (the .tflite predictor runs single-threaded)."""
    lat = latency_race({"model": (predict, input_size, channels)}, rounds=1, runs=runs, warmup=warmup)["model"]
    return {"median_ms": lat["median_ms"], "p90_ms": lat["p90_ms"], "runs": runs, "warmup": warmup}


def latency_race(predictors: dict, rounds: int = 5, runs: int = 400, warmup: int = 50) -> dict:
    """Single-face latency of several models, taken in turns (round after round, every model once per round) so
    that drift in the machine's speed falls on all of them alike. predictors: name -> (predict, input_size,
    channels). Returns name -> {median_ms, p90_ms, runs, rounds} over all of its calls."""
    import time

    rng = np.random.default_rng(0)
    inputs = {k: rng.uniform(0, 255, (1, size, size, ch)).astype(np.float32) for k, (_, size, ch) in predictors.items()}
    for k, (predict, _, _) in predictors.items():
        for _ in range(warmup):
            predict(inputs[k])
    times = {k: [] for k in predictors}
    for _ in range(rounds):
        for k, (predict, _, _) in predictors.items():
            for _ in range(runs):
                start = time.perf_counter()
                predict(inputs[k])
                times[k].append(1e3 * (time.perf_counter() - start))
    return {k: {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "runs": len(t),
                "rounds": rounds} for k, t in times.items()}


def dead_units(keras_model, x: np.ndarray, batch_size: int = 256) -> dict:
    """Dense ReLU units that output zero on every face of `x` (uint8 (N, 48, 48) or model input): 'dead',
    since no gradient reaches them again (the dying-ReLU failure). Per Dense layer with a ReLU activation:
    units, dead, fraction, and the mean and largest pre-activation over the faces and units."""
    import keras

    dense = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.Dense)
             and getattr(layer.activation, "__name__", "") == "relu"]
    if not dense:
        return {}
    x = data.to_model_input(x)
    probe = keras.Model(keras_model.inputs, [layer.input for layer in dense])
    inputs = probe.predict(x, batch_size=batch_size, verbose=0)
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    out = {}
    for layer, h in zip(dense, inputs):
        kernel, bias = (np.asarray(keras.ops.convert_to_numpy(w), np.float64) for w in (layer.kernel, layer.bias))
        pre = np.asarray(h, np.float64) @ kernel + bias
        dead = int((pre.max(axis=0) <= 0).sum())
        out[layer.name] = {"units": int(pre.shape[1]), "dead": dead, "fraction": dead / pre.shape[1],
                           "fan_in": int(kernel.shape[0]), "mean_preactivation": float(pre.mean()),
                           "max_preactivation": float(pre.max()), "faces": int(len(x))}
    return out
