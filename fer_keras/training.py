"""Training: a PyDataset of faces, compile, callbacks, fit. No TensorFlow needed (any Keras backend).

The validation set for callbacks is a stratified slice of Training (`data.holdout_split`), so the
test split (PublicTest) is never seen during training.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from fer_keras import augment, data


class FaceBatches(keras.utils.PyDataset):
    """Batches of faces for `fit`/`predict`: x float32 (B, S, S, 1) in [0, 255], y, [sample weights].

    x: uint8 (N, 48, 48); y: int (N,) or soft float (N, C) or None. crop: model input size S < 48 ->
    random crops when shuffling (training), centre crops otherwise. class_weight: {class: w} applied
    as per-sample weights (works for soft labels too, by argmax).
    """

    def __init__(self, x, y=None, batch_size=64, shuffle=False, crop=None, class_weight=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.shuffle, self.crop = x, y, int(batch_size), shuffle, crop
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(x))
        self.weights = None
        if class_weight is not None and y is not None:
            hard = y.argmax(axis=1) if y.ndim == 2 else y
            self.weights = np.array([class_weight.get(int(c), 1.0) for c in hard], np.float32)
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.x[idx]
        if self.crop and self.crop < x.shape[1]:
            x = augment.random_crops(x, self.crop, self.rng) if self.shuffle else augment.center_crop(x, self.crop)
        x = data.to_model_input(x)
        if self.y is None:
            return (x,)
        if self.weights is None:
            return x, self.y[idx]
        return x, self.y[idx], self.weights[idx]

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


def compile_model(model, learning_rate=1e-3, optimizer="adam", soft_labels=False, weight_decay=None,
                  label_smoothing=0.0, loss=None):
    """Compile with a from-logits cross-entropy (sparse for int labels, dense for soft labels)."""
    if optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate)
    elif optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 1e-4)
    elif optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer {optimizer!r}: choose adam, adamw or sgd")
    if loss is None:
        if soft_labels or label_smoothing:
            loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    acc = keras.metrics.CategoricalAccuracy("accuracy") if soft_labels or label_smoothing else \
        keras.metrics.SparseCategoricalAccuracy("accuracy")
    model.compile(optimizer=opt, loss=loss, metrics=[acc])
    return model


def make_callbacks(best_weights_path=None, reduce_lr_patience=None, early_stopping_patience=None,
                   monitor="val_loss", checkpoint_monitor="val_accuracy", min_lr=1e-6):
    """ModelCheckpoint (best val accuracy weights), optional ReduceLROnPlateau (x0.5, on val loss) and
    EarlyStopping (on val loss, restores the best weights), as S004 plans."""
    callbacks = []
    if best_weights_path:
        callbacks.append(keras.callbacks.ModelCheckpoint(str(best_weights_path), monitor=checkpoint_monitor,
                                                         save_best_only=True, save_weights_only=True))
    if reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                           patience=reduce_lr_patience, min_lr=min_lr))
    if early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=early_stopping_patience,
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


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's learning rate to the epoch logs (for the LR curve)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "learning_rate" not in logs:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def fit(model, train: data.Split, val: data.Split | None, epochs=10, batch_size=64, class_weight=None,
        callbacks=None, seed=0, verbose="auto"):
    """Fit on uint8 faces; crops automatically when the model input is smaller than the faces."""
    crop = model.input_shape[1]
    train_batches = FaceBatches(train.x, train.y, batch_size, shuffle=True, crop=crop,
                                class_weight=class_weight, seed=seed)
    val_batches = FaceBatches(val.x, val.y, batch_size, crop=crop) if val is not None else None
    return model.fit(train_batches, validation_data=val_batches, epochs=epochs, callbacks=callbacks,
                     verbose=verbose)
