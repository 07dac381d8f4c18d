"""Checker functions for the exercise notebooks: each runs the student's answer on a tiny fixed input
and raises AssertionError with a fix-it hint, or prints one line when the answer is right."""

from __future__ import annotations

import numpy as np


def _ok(name: str) -> None:
    print(f"{name}: correct")


def check_class_counts(fn) -> None:
    """fn(y, n_classes) -> int array (n_classes,) of label counts, zeros for absent classes."""
    y = np.array([0, 3, 3, 6, 0, 3])
    got = np.asarray(fn(y, 7))
    assert got.shape == (7,), f"expected 7 counts (one per class), got shape {got.shape}; hint: np.bincount(..., minlength=)"
    assert got.tolist() == [2, 0, 0, 3, 0, 0, 1], f"counts {got.tolist()} are wrong for y={y.tolist()}"
    assert np.asarray(fn(np.array([], int), 3)).tolist() == [0, 0, 0], "an empty label array has zero counts"
    _ok("class_counts")


def check_leaked_test_rows(fn) -> None:
    """fn(train_idx, test_idx, subjects) -> number of test rows whose subject also appears in training."""
    subjects = np.array(["a", "a", "b", "b", "c", "c"])
    assert int(fn(np.array([0, 2]), np.array([1, 3, 4]), subjects)) == 2, \
        "rows 1 (a) and 3 (b) share a subject with training rows 0 and 2: expected 2; hint: np.isin"
    assert int(fn(np.array([0, 1]), np.array([4, 5]), subjects)) == 0, "no subject shared: expected 0"
    _ok("leaked_test_rows")


def check_binary_accuracy(fn) -> None:
    """fn(y_true int (N,), probs (N, C)) -> Keras' binary accuracy of thresholded one-hot predictions."""
    y = np.array([0, 1, 2, 2])
    silent = np.zeros((4, 3))
    assert abs(float(fn(y, silent)) - 8 / 12) < 1e-9, \
        "all-zero predictions on 3 classes match 8 of 12 one-hot entries: expected 0.6667; hint: compare (probs > 0.5) with np.eye(C)[y]"
    perfect = np.eye(3)[y] * 0.9
    assert abs(float(fn(y, perfect)) - 1.0) < 1e-9, "perfect predictions must score 1.0"
    _ok("binary_accuracy")


def check_residual_block(fn) -> None:
    """fn(x, filters) -> a Keras tensor: conv/BN path + shortcut, ReLU; identity shortcut if widths match."""
    import keras

    inp = keras.Input((6, 6, 4))
    model = keras.Model(inp, fn(inp, 4))
    assert model.output_shape == (None, 6, 6, 4), f"output shape {model.output_shape}, expected (None, 6, 6, 4); use padding='same'"
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.allclose(out, np.maximum(x, 0), atol=1e-4), \
        "with all convolutions zeroed the block must return relu(x): is the shortcut added before the last ReLU?"
    wide = keras.Model(inp, fn(inp, 8))
    assert wide.output_shape == (None, 6, 6, 8), "when filters differ from the input width, project the shortcut (1x1 conv)"
    _ok("residual_block")


def check_channel_gate(fn) -> None:
    """fn(features (N, H, W, C), w1, b1, w2, b2) -> CBAM channel gate (N, C) in numpy."""
    import keras

    from fer_keras.layers import CBAM

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 5, 8)).astype("float32")
    layer = CBAM(reduction=4)
    layer(x)
    (w1, b1), (w2, b2) = layer.mlp_hidden.get_weights(), layer.mlp_out.get_weights()
    expected = keras.ops.convert_to_numpy(layer.gates(x)[0])  # a tensor on any backend (a GPU's too)
    got = np.asarray(fn(x, w1, b1, w2, b2))
    assert got.shape == (2, 8), f"gate shape {got.shape}, expected (N, C) = (2, 8)"
    assert np.allclose(got, expected, atol=1e-5), \
        "gate differs from CBAM's: sigmoid(mlp(avg over H, W) + mlp(max over H, W)), mlp = relu(v @ w1 + b1) @ w2 + b2"
    _ok("channel_gate")


def check_head_weights(fn) -> None:
    """fn(h, w, c, units) -> (Flatten->Dense weights, GAP->Dense weights), biases excluded."""
    got = tuple(int(v) for v in fn(8, 8, 512, 1024))
    assert got == (33_554_432, 524_288), f"got {got}; S004's example: 512*8*8*1024 and 512*1024"
    assert tuple(int(v) for v in fn(2, 3, 4, 5)) == (120, 20), "check the formula on h=2, w=3, c=4, units=5"
    _ok("head_weights")


def check_balanced_weights(fn) -> None:
    """fn(y int (N,), n_classes) -> array (n_classes,) of n / (n_classes * count_c)."""
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 1, 2, 2, 2])
    got = np.asarray(fn(y, 3), float)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert got.shape == (3,) and np.allclose(got, expected), f"got {got}, scikit-learn gives {expected}"
    _ok("balanced_weights")


def check_plateau_schedule(fn) -> None:
    """fn(val_losses, lr, patience, factor) -> learning rate used after each epoch (ReduceLROnPlateau)."""
    losses = [1.0, 0.9, 0.95, 0.93, 0.92, 0.8, 0.85, 0.86]
    got = [round(float(v), 6) for v in fn(losses, 0.1, 2, 0.5)]
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025]
    assert got == expected, f"got {got}, expected {expected}: cut the rate after `patience` epochs without a new best, then restart the count"
    _ok("plateau_schedule")


def check_random_gain(fn) -> None:
    """fn(images float (N, H, W, 1) in [0, 255], low, high, rng) -> images * per-image gain, clipped."""
    x = np.full((200, 4, 4, 1), 200.0)
    out = np.asarray(fn(x, 0.8, 1.2, np.random.default_rng(0)))
    assert out.shape == x.shape, "keep the shape"
    assert out.max() <= 255 and out.min() >= 0.8 * 200 - 1e-6, "clip to [0, 255]; gains are in [low, high]"
    assert np.allclose(out, out[:, :1, :1, :]), "one gain per image, the same for all its pixels"
    assert np.unique(out[:, 0, 0, 0]).size > 50, "draw a new gain for every image"
    _ok("random_gain")


def check_separable_cost(fn) -> None:
    """fn(c_in, c_out, k) -> multiplications of a depthwise-separable conv / those of a standard conv,
    at the same output size (S000 eq. 3-1: 1/N + 1/k^2)."""
    for c_in, c_out, k in ((64, 128, 3), (32, 32, 5), (3, 7, 1)):
        expected = 1 / c_out + 1 / k ** 2
        got = float(fn(c_in, c_out, k))
        assert abs(got - expected) < 1e-9, (f"c_in={c_in}, c_out={c_out}, k={k}: got {got:.5f}, expected "
                                            f"{expected:.5f}; hint: depthwise k*k*c_in + pointwise c_in*c_out, "
                                            "over k*k*c_in*c_out")
    _ok("separable_cost")


def check_centralize(fn) -> None:
    """fn(grad (..., C_out)) -> the gradient minus its mean over all axes but the last (GC)."""
    g = np.arange(24, dtype=float).reshape(2, 3, 4)
    got = np.asarray(fn(g), float)
    assert got.shape == g.shape, f"shape {got.shape}, expected {g.shape}"
    assert np.allclose(got.mean(axis=(0, 1)), 0), "each output channel (last axis) must have zero mean after GC"
    assert np.allclose(got, g - g.mean(axis=(0, 1), keepdims=True)), \
        "subtract the mean over the fan-in (axes 0..n-2), keepdims=True, not the global mean"
    _ok("centralize")


def check_focal_loss(fn) -> None:
    """fn(p_true (N,), alpha, gamma) -> mean of -alpha (1 - p)^gamma log p."""
    p = np.array([0.9, 0.5, 0.1])
    for alpha, gamma in ((1.0, 0.0), (0.25, 2.0), (0.5, 5.0)):
        expected = float(np.mean(-alpha * (1 - p) ** gamma * np.log(p)))
        got = float(fn(p, alpha, gamma))
        assert abs(got - expected) < 1e-9, (f"alpha={alpha}, gamma={gamma}: got {got:.6f}, expected {expected:.6f}; "
                                            "gamma=0, alpha=1 must be plain cross-entropy -log p")
    _ok("focal_loss")


def check_region_share(fn) -> None:
    """fn(heat (S, S), top, bottom) -> share of the map's mass in rows round(top*S):round(bottom*S)."""
    heat = np.zeros((10, 10))
    heat[6:9] = 1.0
    got = float(fn(heat, 0.6, 0.9))
    assert abs(got - 1.0) < 1e-9, f"all the mass is in rows 6-8: expected 1.0, got {got}; hint: rows round(top*S) to round(bottom*S)"
    assert abs(float(fn(np.ones((10, 10)), 0.0, 0.3)) - 0.3) < 1e-9, "a uniform map has 30 % of its mass in 30 % of the rows"
    _ok("region_share")


def check_majority_label(fn) -> None:
    """fn(votes (10,)) -> FER+'s majority label: zero the single votes, the class holding more than half
    of the remaining votes, else -1."""
    cases = [([8, 1, 0, 0, 1, 0, 0, 0, 0, 0], 0), ([4, 0, 4, 0, 0, 2, 0, 0, 0, 0], -1),
             ([1, 1, 1, 1, 1, 5, 0, 0, 0, 0], 5), ([3, 0, 0, 2, 0, 0, 0, 0, 0, 0], 0), ([1] * 10, -1)]
    for votes, expected in cases:
        got = int(fn(np.array(votes, float)))
        assert got == expected, (f"votes {votes}: expected {expected}, got {got}; hint: single votes (== 1) are "
                                 "outliers and set to 0 before the majority test (top > half of the rest)")
    _ok("majority_label")


def check_int8_quantize(fn) -> None:
    """fn(x float array, scale, zero_point) -> int8 array: clip(round(x / scale) + zero_point, -128, 127)."""
    x = np.array([-1.0, 0.0, 0.26, 1.0, 100.0])
    got = np.asarray(fn(x, 0.01, -3))
    expected = np.array([-103, -3, 23, 97, 127])
    assert got.dtype == np.int8, f"return int8 values (got {got.dtype}); hint: .astype(np.int8) after clipping"
    assert got.tolist() == expected.tolist(), (f"got {got.tolist()}, expected {expected.tolist()}; hint: round "
                                               "x / scale, add the zero point, clip to [-128, 127]")
    _ok("int8_quantize")


def check_taylor_score(fn) -> None:
    """fn(gammas (B, C), grads (B, C)) -> (C,) sum over batches of |gamma * dL/dgamma| (S003 eq. 3-6)."""
    gammas = np.array([[1.0, -2.0, 0.5], [1.0, -2.0, 0.5]])
    grads = np.array([[0.1, 0.1, -4.0], [-0.1, 0.3, 0.0]])
    got = np.asarray(fn(gammas, grads), float)
    assert got.shape == (3,), f"one score per channel: expected shape (3,), got {got.shape}"
    assert np.allclose(got, [0.2, 0.8, 2.0]), (f"got {got.tolist()}, expected [0.2, 0.8, 2.0]; hint: take the "
                                               "absolute value per batch, then sum (signs must not cancel)")
    _ok("taylor_score")


def check_expand_box(fn) -> None:
    """fn((x, y, w, h), margin, width, height) -> (x0, y0, x1, y1): the box grown by margin*w and margin*h
    on every side, clipped to the image."""
    cases = [(((10, 20, 100, 50), 0.1, 640, 480), (0, 15, 120, 75)), (((600, 400, 50, 50), 0.2, 640, 480), (590, 390, 640, 460)),
             (((100, 100, 40, 40), 0.0, 640, 480), (100, 100, 140, 140))]
    for args, expected in cases:
        got = tuple(int(v) for v in fn(*args))
        assert got == expected, f"box {args[0]}, margin {args[1]}: expected {expected}, got {got}; hint: int(w * margin), then clip with max/min"
    _ok("expand_box")


def check_soft_targets(fn) -> None:
    """fn(logits (N, C), T) -> softmax(logits / T) per row."""
    logits = np.array([[2.0, 0.0, -2.0], [10.0, 10.0, 10.0]])
    got = np.asarray(fn(logits, 2.0), float)
    assert got.shape == logits.shape, f"shape {got.shape}, expected {logits.shape}"
    assert np.allclose(got.sum(axis=1), 1), "each row must sum to 1"
    e = np.exp(logits[0] / 2.0)
    assert np.allclose(got[0], e / e.sum()), "divide the logits by T before the softmax"
    assert np.allclose(got[1], 1 / 3), "equal logits give equal probabilities"
    hot = np.asarray(fn(np.array([[1000.0, 0.0, 0.0]]), 1.0), float)
    assert np.isfinite(hot).all(), "large logits overflow: subtract each row's max before exp"
    _ok("soft_targets")


def check_warmup_decay(fn) -> None:
    """fn(progress in [0, 1], warmup fraction) -> learning-rate multiplier: linear warm-up to 1, then linear
    decay to exactly 0 at progress 1 (the budget schedule of notebook 17)."""
    assert abs(float(fn(0.0, 0.1))) < 1e-9, "at progress 0 the warm-up starts from 0"
    assert abs(float(fn(0.05, 0.1)) - 0.5) < 1e-9, "halfway through a 0.1 warm-up the multiplier is 0.5"
    assert abs(float(fn(0.1, 0.1)) - 1.0) < 1e-9, "the warm-up ends at the peak, 1.0"
    assert abs(float(fn(0.55, 0.1)) - 0.5) < 1e-9, \
        "after the warm-up, decay linearly: at 0.55 (halfway from 0.1 to 1) expect 0.5; hint: (1 - p) / (1 - warmup)"
    assert abs(float(fn(1.0, 0.1))) < 1e-9, "the rate must reach exactly 0 at the deadline"
    assert abs(float(fn(1.3, 0.1))) < 1e-9, "past the deadline (a late step) the rate stays 0, never negative"
    _ok("warmup_decay")
