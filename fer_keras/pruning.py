"""S003 done the Keras way: gated (Taylor) channel pruning with real structural removal, the
Punish-Reward-Judge loop, and Hutchinson estimates of the Hessian trace per layer and per channel.

Gradients come from TensorFlow's GradientTape (TensorFlow backend), like the TFLite export they feed.

Structural pruning works on *chain* models (every Conv2D feeds, through BN, activations, pooling and
dropout only, the next Conv2D or a GAP/Flatten -> Dense head): `small_cnn` and `baseline_cnn` (S004).
A residual Add needs matching channels on both sides and is refused with a clear message.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import keras
from keras import layers

from fer_keras import data

_PASS = (layers.ReLU, layers.Activation, layers.MaxPooling2D, layers.AveragePooling2D, layers.Dropout,
         layers.Identity, layers.GlobalAveragePooling2D, layers.PReLU)


class PruningError(ValueError):
    """The model cannot be pruned structurally as asked; the message says why and what to do."""


def _require_tf():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("pruning and Hessian estimates use TensorFlow's GradientTape; set KERAS_BACKEND=tensorflow "
                           f"(this session runs {keras.backend.backend()!r}).")
    import tensorflow as tf

    return tf


def gated_layers(model) -> dict[str, str]:
    """{BatchNormalization name: the Conv2D it gates}, for BN layers that directly follow a Conv2D."""
    parents = {}
    for cfg in model.get_config()["layers"]:  # the public graph description: who feeds whom
        nodes = cfg.get("inbound_nodes") or []
        args = nodes[0]["args"] if nodes else []
        first = args[0] if args else None
        if isinstance(first, dict) and "keras_history" in first.get("config", {}):
            parents[cfg["name"]] = first["config"]["keras_history"][0]
    gates = {}
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization) and layer.name in parents:
            parent = model.get_layer(parents[layer.name])
            if isinstance(parent, layers.Conv2D) and not isinstance(parent, layers.DepthwiseConv2D):
                gates[layer.name] = parent.name
    return gates


def _batches(x, y, batch_size):
    """Faces (N, S, S) -> model input batches; other arrays (already model input) pass as float32."""
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        yield (data.to_model_input(xb) if xb.ndim == 3 else np.asarray(xb, np.float32)), y[i:i + batch_size]


def _loss_fn(model):
    loss = model.loss if getattr(model, "loss", None) is not None else \
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return loss


def taylor_scores(model, x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """S003 eq. 3-6: importance of every gated channel, sum over the data of |gamma * dL/dgamma|, one array
    per BN layer. x: uint8 faces at the model's input size (N, S, S); y: int labels."""
    tf = _require_tf()
    gates = gated_layers(model)
    if not gates:
        raise PruningError(f"{model.name}: no BatchNormalization directly after a Conv2D: nothing to gate.")
    bns = [model.get_layer(name) for name in gates]
    gammas = [bn.gamma for bn in bns]
    loss_fn = _loss_fn(model)
    totals = [np.zeros(g.shape, np.float64) for g in gammas]
    for xb, yb in _batches(x, y, batch_size):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=False)) * len(yb)  # sum over faces, not the mean
        grads = tape.gradient(loss, [g.value for g in gammas])
        for total, gamma, grad in zip(totals, gammas, grads):
            total += np.abs(gamma.numpy() * grad.numpy())
    return {bn.name: total for bn, total in zip(bns, totals)}


def prune_plan(scores: dict[str, np.ndarray], fraction: float, min_keep: int = 4) -> dict[str, np.ndarray]:
    """Global ranking (S003): drop the `fraction` of all gated channels with the lowest scores, never
    leaving a layer with fewer than `min_keep` channels. Returns {BN name: sorted channel indices to keep}."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction {fraction}: choose 0 <= fraction < 1")
    flat = np.concatenate([s for s in scores.values()])
    n_drop = int(round(fraction * len(flat)))
    order = np.argsort(flat, kind="stable")
    owner = np.concatenate([[name] * len(s) for name, s in scores.items()])
    index = np.concatenate([np.arange(len(s)) for s in scores.values()])
    keep = {name: np.ones(len(s), bool) for name, s in scores.items()}
    dropped = 0
    for i in order:
        if dropped >= n_drop:
            break
        name = owner[i]
        if keep[name].sum() > min_keep:
            keep[name][index[i]] = False
            dropped += 1
    return {name: np.flatnonzero(k) for name, k in keep.items()}


def masked_copy(model, plan: dict[str, np.ndarray]) -> keras.Model:
    """The original model with the pruned gates set to zero (gamma = beta = 0): what 'soft pruning' means.
    Its predictions equal the structurally pruned model's (a test checks it)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name, keep in plan.items():
        bn = copy.get_layer(name)
        drop = np.setdiff1d(np.arange(bn.gamma.shape[0]), keep)
        for var in (bn.gamma, bn.beta):
            value = var.numpy()
            value[drop] = 0.0
            var.assign(value)
    return copy


def prune(model, plan: dict[str, np.ndarray], gamma_l1: float = 0.0) -> keras.Model:
    """A thinner copy of a chain model: the pruned filters removed from each gated Conv2D, its BN and the
    next layer's inputs, surviving weights copied. gamma_l1 > 0 adds S003's L1 penalty on every BN scale
    (for the Reward stage). Parameters, FLOPs and the .tflite size really shrink."""
    gates = gated_layers(model)
    conv_keep = {gates[bn]: keep for bn, keep in plan.items()}
    for layer in model.layers:
        if isinstance(layer, (layers.Add, layers.Concatenate, layers.Multiply)):
            raise PruningError(f"{model.name}: layer {layer.name!r} ({type(layer).__name__}) joins branches; "
                               "structural pruning here supports chain models (small_cnn, baseline_cnn). Fix: "
                               "prune a chain model, or prune every branch of the join alike.")

    def clone(layer):
        config = layer.get_config()
        if layer.name in conv_keep:
            config["filters"] = int(len(conv_keep[layer.name]))
        if isinstance(layer, layers.BatchNormalization) and gamma_l1:
            config["gamma_regularizer"] = keras.regularizers.L1(gamma_l1)
        return layer.__class__.from_config(config)

    thin = keras.models.clone_model(model, clone_function=clone)
    keep = None  # channels of the current tensor that survive (None = all)
    for old in model.layers:
        new = thin.get_layer(old.name)
        weights = old.get_weights()
        if isinstance(old, layers.Conv2D) and not isinstance(old, layers.DepthwiseConv2D):
            kernel = weights[0] if keep is None else weights[0][:, :, keep, :]
            out_keep = conv_keep.get(old.name)
            if out_keep is not None:
                kernel = kernel[..., out_keep]
            new_w = [kernel] + ([weights[1] if out_keep is None else weights[1][out_keep]] if old.use_bias else [])
            new.set_weights(new_w)
            keep = out_keep
        elif isinstance(old, layers.BatchNormalization):
            new.set_weights([w if keep is None else w[keep] for w in weights])
        elif isinstance(old, layers.Dense):  # after GAP: rows = channels; after Flatten: flat indices
            new.set_weights([weights[0] if keep is None else weights[0][keep]] + weights[1:])
            keep = None
        elif isinstance(old, layers.Flatten):
            if keep is not None:
                h, w, c = old.input.shape[1:]
                keep = (np.arange(h * w)[:, None] * c + keep[None, :]).ravel()
        elif weights:
            if keep is not None and not isinstance(old, _PASS):
                raise PruningError(f"{model.name}: cannot carry pruned channels through {old.name!r} "
                                   f"({type(old).__name__}).")
            new.set_weights(weights)
    return thin


def channel_counts(model) -> dict[str, int]:
    """Output channels of every Conv2D (the check that pruning really removed filters)."""
    return {layer.name: int(layer.filters) for layer in model.layers
            if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.DepthwiseConv2D)}


def _accuracy(model, split: data.Split) -> float:
    from fer_keras import evaluation

    probs = evaluation.predict_proba(lambda v: keras.ops.convert_to_numpy(model(v, training=False)), split.x,
                                     model.input_shape[1])
    return float((probs.argmax(axis=1) == split.y).mean())


def punish_reward_judge(model, train: data.Split, judge: data.Split, step_fraction: float = 0.05,
                        gamma_l1: float = 1e-4, max_drop: float = 0.01, reward_epochs: int = 1,
                        punish_faces: int = 100, max_steps: int = 10, learning_rate: float = 1e-4,
                        batch_size: int = 64, seed: int = 0, verbose=0) -> tuple[keras.Model, pd.DataFrame]:
    """S003's loop. Punish: Taylor scores on a class-balanced sub-dataset (`punish_faces` per class), the
    lowest `step_fraction` of the remaining gated channels removed. Reward: `reward_epochs` of training on
    all of `train` with L1 (`gamma_l1`) on the BN scales. Judge: accuracy on `judge`; stop when it is more
    than `max_drop` below the unpruned model's, and return the last accepted model.

    S003 leaves lambda and the threshold unstated: gamma_l1 = 1e-4 and max_drop = 1 point are this kit's
    choices. Returns (model, history table with params, channels and accuracy per step).
    """
    from fer_keras import flops, models, training

    sub = data.stratified_indices(train.y, punish_faces, seed)
    base_acc = _accuracy(model, judge)
    history = [{"step": 0, "params": models.trainable_params(model), "MFLOPs": flops.count_flops(model) / 1e6,
                "gated channels": sum(channel_counts(model)[c] for c in gated_layers(model).values()),
                "judge accuracy": base_acc, "accepted": True}]
    current = model
    for step in range(1, max_steps + 1):
        scores = taylor_scores(current, train.x[sub], train.y[sub], batch_size)
        candidate = prune(current, prune_plan(scores, step_fraction), gamma_l1)
        training.compile_model(candidate, learning_rate)
        training.fit(candidate, train, None, reward_epochs, batch_size, seed=seed + step, verbose=verbose)
        acc = _accuracy(candidate, judge)
        ok = base_acc - acc <= max_drop
        history.append({"step": step, "params": models.trainable_params(candidate),
                        "MFLOPs": flops.count_flops(candidate) / 1e6,
                        "gated channels": sum(channel_counts(candidate)[c] for c in gated_layers(candidate).values()),
                        "judge accuracy": acc, "accepted": ok})
        if not ok:
            break
        current = candidate
    return current, pd.DataFrame(history).set_index("step")


# ------------------------------------------------------------------ Hessian sensitivity (HAWQ-V2 / S003)
def hessian_traces(model, x: np.ndarray, y: np.ndarray, probes: int = 20, distribution: str = "rademacher",
                   batch_size: int = 64, seed: int = 0) -> dict[str, dict]:
    """Hutchinson estimates Tr(H) ~ mean_z z^T H z of the loss Hessian for every Conv2D / Dense kernel,
    with Hessian-vector products by double back-propagation; and per output channel (S003 eq. 4-8: the
    probe masked to one channel), read from the same products. Returns {layer: {trace, mean_trace (per
    weight, HAWQ-V2's sensitivity), channel_traces (C_out,), params}}. z is Rademacher (+-1) or Gaussian."""
    tf = _require_tf()
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution {distribution!r}: choose 'rademacher' or 'gaussian'")
    kernels = [(layer.name, layer.kernel) for layer in model.layers
               if isinstance(layer, (layers.Conv2D, layers.Dense)) and not isinstance(layer, layers.DepthwiseConv2D)]
    variables = [k.value for _, k in kernels]
    loss_fn = _loss_fn(model)
    rng = np.random.default_rng(seed)
    sums = [np.zeros(v.shape, np.float64) for v in variables]
    batches = list(_batches(x, y, batch_size))
    for _ in range(probes):
        if distribution == "rademacher":
            zs = [rng.choice([-1.0, 1.0], size=v.shape).astype(np.float32) for v in variables]
        else:
            zs = [rng.normal(size=v.shape).astype(np.float32) for v in variables]
        hz_total = [np.zeros(v.shape, np.float64) for v in variables]
        for xb, yb in batches:
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = loss_fn(yb, model(xb, training=False)) * (len(yb) / len(x))
                grads = inner.gradient(loss, variables)
                dot = tf.add_n([tf.reduce_sum(g * z) for g, z in zip(grads, zs)])
            for total, hz in zip(hz_total, outer.gradient(dot, variables)):
                total += hz.numpy()
        for s, z, hz in zip(sums, zs, hz_total):
            s += z * hz
    out = {}
    for (name, _), s in zip(kernels, sums):
        elem = s / probes  # E[z * Hz] elementwise: its sum over a block is that block's trace estimate
        per_channel = elem.reshape(-1, elem.shape[-1]).sum(axis=0)
        out[name] = {"trace": float(elem.sum()), "mean_trace": float(elem.sum() / elem.size),
                     "channel_traces": per_channel, "params": int(elem.size)}
    return out


def sensitivity_table(traces: dict[str, dict]) -> pd.DataFrame:
    """Layers ranked by mean Hessian trace (most sensitive first)."""
    table = pd.DataFrame({name: {"mean trace": t["mean_trace"], "trace": t["trace"], "params": t["params"],
                                 "channel trace min": float(t["channel_traces"].min()),
                                 "channel trace max": float(t["channel_traces"].max())}
                          for name, t in traces.items()}).T
    return table.sort_values("mean trace", ascending=False)
