"""Why the model decides: saliency maps (one call per method) and robustness over a whole test split.

Every map function takes a Keras model (grey faces in [0, 255] -> logits, as the kit builds them), faces
x float32 (N, S, S, 1) at the model's input size, and class indices (one per face), and returns heat maps
(N, S, S) in [0, 1] in input coordinates (1 = most important).

- `grad_cam`: Grad-CAM (Selvaraju et al., 2017) through tf-explain (TensorFlow backend), on the logit.
- `occlusion`: occlusion sensitivity through tf-explain: a grey patch slides over the face; the map is
  1 - the softmax probability of the class with that patch grey.
- `score_cam`: Score-CAM as S000's Algorithm 4-1 (any backend, forward passes only): each activation map
  of the last conv layer, bilinearly upsampled and min-max normalised, masks the face; its weight is the
  softmax over channels of the class probability gain over a black baseline; map = ReLU(sum_k a_k A_k).
- `meaningful_perturbation`: Fong & Vedaldi (2017), TensorFlow backend: a low-resolution mask optimised
  with Adam (lr 0.1, 500 iterations) to delete as little as possible (L1 area term) with a smooth shape
  (total variation) while the class probability of the perturbed face drops; blur or constant
  perturbation; random jitter. The map is 1 - mask (deleted = important).

`robustness` and `attention_by_region` turn S000's one-image-per-transform analysis into numbers over a
whole split; `randomized_copy` is the model-randomisation sanity check of Adebayo et al. (2018).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pandas as pd

from fer_keras import config, evaluation

# Horizontal bands of an aligned 48x48 FER face, as fractions of the height (approximate: FER2013 faces
# are registered loosely). Rows outside every band count as 'other'.
REGIONS = {"brows": (0.12, 0.30), "eyes": (0.30, 0.48), "nose": (0.48, 0.64), "mouth": (0.64, 0.90)}
METHODS = ("grad_cam", "score_cam", "occlusion", "meaningful_perturbation")


def default_method(backend: str | None = None) -> str:
    """grad_cam on the TensorFlow backend (its GradientTape), score_cam elsewhere (forward passes only)."""
    return "grad_cam" if (backend or keras.backend.backend()) == "tensorflow" else "score_cam"


def _faces(model, x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    want = tuple(model.input_shape[1:])
    if x.shape[1:] != want:
        raise ValueError(f"faces of shape {x.shape[1:]} but the model expects {want}. Fix: crop or resize the "
                         "faces to the model's input (evaluation uses the centre crop).")
    return x


def _classes(class_index, n) -> np.ndarray:
    idx = np.broadcast_to(np.asarray(class_index, int), (n,))
    return idx.copy()


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Min-max each map to [0, 1] (a flat map becomes 0)."""
    maps = np.asarray(maps, np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


def _resize(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), bilinear."""
    out = keras.ops.image.resize(np.asarray(maps, np.float32)[..., None], (size, size), interpolation="bilinear")
    return keras.ops.convert_to_numpy(out)[..., 0]


def _require_tf(method: str) -> None:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"{method} uses TensorFlow (tf-explain / GradientTape); this session runs Keras on "
                           f"{keras.backend.backend()!r}. Fix: set KERAS_BACKEND=tensorflow before importing keras, "
                           "or use score_cam, which runs on every backend.")


def probability_model(model) -> keras.Model:
    """The model with a softmax on its logits (for methods that read class probabilities)."""
    return keras.Model(model.inputs[0], keras.layers.Softmax(name="probabilities")(model.outputs[0]))


def grad_cam(model, x, class_index, layer_name: str = "last_conv") -> np.ndarray:
    """Grad-CAM maps (N, S, S) via tf-explain, gradients of the class logit at `layer_name`."""
    _require_tf("grad_cam")
    from tf_explain.core.grad_cam import GradCAM

    x = _faces(model, x)
    idx = _classes(class_index, len(x))
    maps = np.zeros(x.shape[:3], np.float32)
    for c in np.unique(idx):
        sel = np.flatnonzero(idx == c)
        with warnings.catch_warnings():  # tf-explain passes [model.inputs]; Keras warns about the nesting
            warnings.simplefilter("ignore", UserWarning)
            outputs, grads = GradCAM.get_gradients_and_filters(model, x[sel], layer_name, int(c),
                                                               use_guided_grads=False)
        cams = np.stack([np.asarray(m) for m in GradCAM.generate_ponderated_output(outputs, grads)])
        maps[sel] = _resize(np.maximum(cams, 0), x.shape[1])
    return _normalise(maps)


def occlusion(model, x, class_index, patch_size: int = 8, batch_size: int = 64) -> np.ndarray:
    """Occlusion sensitivity maps (N, S, S) via tf-explain (grey 127.5 patches, stride = patch_size)."""
    _require_tf("occlusion")
    from tf_explain.core.occlusion_sensitivity import OcclusionSensitivity

    x = _faces(model, x)
    idx = _classes(class_index, len(x))
    probs = probability_model(model)
    explainer = OcclusionSensitivity(batch_size=batch_size)
    import tensorflow as tf

    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # tf-explain calls predict without verbose=0
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # and once per face: TF warns about retracing
    try:
        maps = [np.asarray(explainer.get_sensitivity_map(probs, face, int(c), patch_size), np.float32)
                for face, c in zip(x, idx)]
    finally:
        tf.get_logger().setLevel(level)
        if interactive:
            keras.config.enable_interactive_logging()
    return _normalise(np.stack(maps))


def score_cam(model, x, class_index, layer_name: str = "last_conv", batch_size: int = 128) -> np.ndarray:
    """Score-CAM maps (N, S, S), S000's Algorithm 4-1 with a black baseline and class probabilities."""
    x = _faces(model, x)
    idx = _classes(class_index, len(x))
    features = keras.Model(model.inputs[0], model.get_layer(layer_name).output)
    probs = probability_model(model)

    def run(net, batch):  # direct calls: no per-shape predict-function retracing
        return np.concatenate([keras.ops.convert_to_numpy(net(batch[i:i + batch_size], training=False))
                               for i in range(0, len(batch), batch_size)])

    size = x.shape[1]
    baseline = run(probs, np.zeros_like(x[:1]))[0]
    maps = []
    for face, c in zip(x, idx):
        acts = run(features, face[None])[0]  # (h, w, K)
        masks = _normalise(_resize(np.moveaxis(acts, -1, 0), size))  # (K, S, S)
        gain = run(probs, masks[..., None] * face[None])[:, c] - baseline[c]
        weights = np.exp(gain - gain.max())
        weights /= weights.sum()
        cam = np.maximum(np.tensordot(acts, weights, axes=([2], [0])), 0)
        maps.append(_resize(cam[None], size)[0])
    return _normalise(np.stack(maps))


def meaningful_perturbation(model, x, class_index, iterations: int = 500, learning_rate: float = 0.1,
                            l1_coeff: float = 0.01, tv_coeff: float = 0.2, tv_beta: float = 3.0,
                            mask_size: int = 12, perturbation: str = "blur", blur_sigma: float = 5.0,
                            jitter: int = 2, seed: int = 0) -> np.ndarray:
    """Meaningful-perturbation maps (N, S, S) (Fong & Vedaldi, 2017), optimised per face.

    Minimises l1_coeff * mean|1 - m| + tv_coeff * mean TV(m)^tv_beta + p_c(perturbed face) over a
    mask_size^2 mask (sigmoid-free, clipped to [0, 1], upsampled bilinearly), starting from m = 1 (keep
    all). perturbation 'blur' (Gaussian, sigma blur_sigma px) or 'constant' (the face's mean grey);
    jitter: random shifts of up to `jitter` px per iteration (the E_tau term). Defaults follow the
    reference implementation's (S000 states only Adam lr 0.1 and 500 iterations).
    """
    _require_tf("meaningful_perturbation")
    import cv2
    import tensorflow as tf

    if perturbation not in ("blur", "constant"):
        raise ValueError(f"perturbation {perturbation!r}: choose 'blur' or 'constant'")
    x = _faces(model, x)
    idx = _classes(class_index, len(x))
    size = x.shape[1]
    probs = probability_model(model)
    if perturbation == "blur":
        other = np.stack([cv2.GaussianBlur(f[..., 0], (0, 0), blur_sigma)[..., None] for f in x])
    else:
        other = np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), x.shape).astype(np.float32)
    # all faces at once: each face's loss depends on its own mask only, so one summed loss optimises
    # every mask independently (Adam is per element)
    mask = keras.Variable(np.ones((len(x), mask_size, mask_size, 1), np.float32), name="mask")
    opt = keras.optimizers.Adam(learning_rate)
    faces, others = tf.constant(x), tf.constant(other)
    onehot = tf.one_hot(idx, int(model.output_shape[-1]))

    @tf.function
    def step(dy, dx):
        with tf.GradientTape() as tape:
            m = tf.image.resize(mask.value, (size, size), method="bilinear")
            shifted = tf.roll(faces, (dy, dx), axis=(1, 2))
            blurred = tf.roll(others, (dy, dx), axis=(1, 2))
            score = tf.reduce_sum(probs(shifted * m + blurred * (1 - m), training=False) * onehot, axis=1)
            tv = (tf.reduce_mean(tf.abs(mask.value[:, 1:] - mask.value[:, :-1]) ** tv_beta, axis=(1, 2, 3))
                  + tf.reduce_mean(tf.abs(mask.value[:, :, 1:] - mask.value[:, :, :-1]) ** tv_beta, axis=(1, 2, 3)))
            area = tf.reduce_mean(tf.abs(1 - mask.value), axis=(1, 2, 3))
            loss = tf.reduce_sum(l1_coeff * area + tv_coeff * tv + score)
        opt.apply_gradients([(tape.gradient(loss, mask.value), mask)])
        mask.assign(tf.clip_by_value(mask.value, 0.0, 1.0))
        return loss

    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        dy, dx = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
        step(tf.constant(int(dy)), tf.constant(int(dx)))
    return np.clip(1 - _resize(np.asarray(mask.value)[..., 0], size), 0, 1).astype(np.float32)


def saliency(method: str, model, x, class_index, **kwargs) -> np.ndarray:
    """Dispatch by name: one of METHODS."""
    funcs = {"grad_cam": grad_cam, "score_cam": score_cam, "occlusion": occlusion,
             "meaningful_perturbation": meaningful_perturbation}
    if method not in funcs:
        raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    return funcs[method](model, x, class_index, **kwargs)


# ------------------------------------------------------------------ sanity check (Adebayo et al., 2018)
def randomized_copy(model, which: str = "all", seed: int = 1) -> keras.Model:
    """A copy of `model` with freshly initialised weights: all layers ('all') or the classifier only
    ('top', the first step of the cascading randomisation). A saliency method that ignores the weights
    gives the same maps for both."""
    keras.utils.set_random_seed(seed)
    fresh = keras.models.clone_model(model)
    if which == "top":
        fresh.set_weights(model.get_weights())
        layer = fresh.get_layer("logits")
        layer.set_weights([np.random.default_rng(seed).normal(0, 0.05, w.shape).astype(w.dtype)
                           for w in layer.get_weights()])
    elif which != "all":
        raise ValueError(f"which {which!r}: choose 'all' or 'top'")
    return fresh


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Spearman rank correlation between paired maps (N, S, S)."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():  # a flat map has no ranks: its correlation is NaN and left out
        warnings.simplefilter("ignore")
        values = [spearmanr(p.ravel(), q.ravel()).statistic for p, q in zip(a, b)]
    return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")


# ------------------------------------------------------------------ robustness over a split
def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    size = x.shape[1]
    rot = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), degrees, 1.0)
    return np.stack([cv2.warpAffine(f, rot, (size, size), borderMode=cv2.BORDER_REPLICATE) for f in x])


def _band(x: np.ndarray, region: str, value: float = 127.5) -> np.ndarray:
    top, bottom = REGIONS[region]
    size = x.shape[1]
    out = x.copy()
    out[:, round(top * size):round(bottom * size)] = value
    return out


def transforms() -> dict:
    """Name -> function on uint8-range faces (N, 48, 48) float32, the S000 transforms plus occlusions."""
    def clip(v):
        return np.clip(v, 0, 255)

    ts = {"original": lambda x: x,
          "brightness x0.6": lambda x: clip(x * 0.6), "brightness x1.4": lambda x: clip(x * 1.4),
          "contrast x0.5": lambda x: clip((x - x.mean(axis=(1, 2), keepdims=True)) * 0.5 + x.mean(axis=(1, 2), keepdims=True)),
          "contrast x1.5": lambda x: clip((x - x.mean(axis=(1, 2), keepdims=True)) * 1.5 + x.mean(axis=(1, 2), keepdims=True)),
          "horizontal flip": lambda x: x[:, :, ::-1], "vertical flip": lambda x: x[:, ::-1]}
    for deg in (10, 20, 30, 45):
        ts[f"rotation {deg}°"] = lambda x, d=deg: _rotate(x, d)
    for region in ("eyes", "mouth"):
        ts[f"occlude {region}"] = lambda x, r=region: _band(x, r)
    return ts


def robustness(predict, x: np.ndarray, y: np.ndarray, input_size: int, ts: dict | None = None) -> pd.DataFrame:
    """Accuracy, mean confidence (top probability) and mean probability of the true class over the whole
    split under each transform (applied to the 48x48 faces before the centre crop).
    predict: logits function of model input (LoadedModel.predict, keras_model.predict)."""
    ts = ts or transforms()
    x = np.asarray(x, np.float32)
    rows = {}
    for name, fn in ts.items():
        p = evaluation.predict_proba(predict, np.asarray(fn(x), np.float32), input_size)
        rows[name] = {"accuracy": float((p.argmax(1) == y).mean()), "mean confidence": float(p.max(1).mean()),
                      "p(true class)": float(p[np.arange(len(y)), y].mean()), "n": len(y)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["Δ accuracy (pt)"] = 100 * (table["accuracy"] - table.loc["original", "accuracy"])
    return table


def region_shares(maps: np.ndarray) -> pd.DataFrame:
    """Share of each map's mass in each face band (rows sum to 1 with 'other')."""
    maps = np.asarray(maps, np.float64)
    size = maps.shape[1]
    total = maps.sum(axis=(1, 2)) + 1e-12
    shares = {}
    for region, (top, bottom) in REGIONS.items():
        shares[region] = maps[:, round(top * size):round(bottom * size)].sum(axis=(1, 2)) / total
    frame = pd.DataFrame(shares)
    frame["other"] = 1 - frame.sum(axis=1)
    return frame


def attention_by_region(maps: np.ndarray, y_true, y_pred, class_names=config.FER2013_CLASSES) -> pd.DataFrame:
    """Mean share of the saliency mass per face band, per class, over correctly classified faces only
    (the quantitative form of 'happy looks at the mouth'); column n counts the faces."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    shares = region_shares(maps)
    ok = y_true == y_pred
    shares["class"] = [class_names[c] for c in y_true]
    table = shares[ok].groupby("class").mean()
    table["n"] = shares[ok].groupby("class").size()
    return table.reindex([c for c in class_names if c in table.index])


def explain_faces(model, faces48: np.ndarray, method: str = "grad_cam", class_index=None, **kwargs):
    """Centre-crop 48x48 faces to the model input, predict, and explain the predicted (or given) class.
    Returns (maps (N, S, S), probabilities (N, C), cropped faces (N, S, S))."""
    from fer_keras import augment, data

    size = model.input_shape[1]
    faces = np.asarray(faces48)
    if faces.ndim == 4:
        faces = faces[..., 0]
    crop = augment.center_crop(faces, size) if size < faces.shape[1] else faces
    x = data.to_model_input(crop)
    probs = evaluation.softmax(np.concatenate([keras.ops.convert_to_numpy(model(x[i:i + 256], training=False))
                                               for i in range(0, len(x), 256)]))
    target = probs.argmax(1) if class_index is None else _classes(class_index, len(x))
    return saliency(method, model, x, target, **kwargs), probs, crop

