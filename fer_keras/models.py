"""Model builders (functional API). Every model takes grey faces in [0, 255], shape (N, H, W, 1),
runs its augmentation layers (training only), rescales inside, and returns logits (N, classes).

`build_s004` is one builder for the S004 path (notebooks 01-07), switched by flags, not seven copies.
"""

from __future__ import annotations

from functools import partial

import keras
from keras import layers

from fer_keras import config
from fer_keras.augment import build_augmentation
from fer_keras.layers import CBAM


def _stem(input_size: int, augment: str, seed: int | None, channels: int = 1):
    """Input -> augmentation (training only) -> Rescaling to [0, 1]."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = inputs
    aug = build_augmentation(augment, seed=seed)
    if aug is not None:
        x = aug(x)
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(x)


def _conv(x, filters, bn=True, padding="valid", name=None, out_name=None, bn_momentum=0.99):
    """Conv 3x3 -> [BN] -> ReLU (S004's unit); `out_name` names the ReLU (e.g. 'last_conv')."""
    x = layers.Conv2D(filters, 3, padding=padding, name=f"{name}_conv")(x)
    if bn:
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=out_name or f"{name}_relu")(x)


def _residual_block(x, filters, name):
    """Basic residual block: conv-BN-ReLU-conv-BN + shortcut (1x1 conv-BN when widths differ), ReLU."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _dense_head(x, head, num_classes, hidden=1024, dropout=0.2):
    """Flatten or GAP -> Dense 1024 ReLU -> Dropout -> Dense 1024 ReLU -> Dropout -> logits."""
    x = layers.Flatten(name="flatten")(x) if head == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    for i in (1, 2):
        x = layers.Dense(hidden, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    return layers.Dense(num_classes, name="logits")(x)


def build_s004(residual: bool = False, cbam: bool = False, head: str = "flatten", augment: str = "none",
               num_classes: int = 7, input_size: int = config.IMAGE_SIZE, cbam_reduction: int = 16,
               seed: int | None = None, name: str | None = None) -> keras.Model:
    """The S004 baseline CNN and its planned improvements, one flag per idea.

    residual=False, cbam=False, head='flatten': S004 exactly (valid 3x3 convs 64,64 | 64,64 pool |
    128,128 | 128,128 pool | 256,256, BN on the odd stages, Dropout 0.5 after stage 1, two Dense 1024):
    3,623,239 parameters with 48x48x1 input and 7 classes.
    residual=True: the 64/128/256 width stages each become two basic residual blocks ('same' padding,
    BN everywhere), max-pooled after the 64 and 128 stages as in the original.
    cbam=True (needs residual): a CBAM module at the end of each width stage.
    head='gap': GlobalAveragePooling2D instead of Flatten before the dense layers.
    """
    if head not in ("flatten", "gap"):
        raise ValueError(f"head {head!r}: choose 'flatten' or 'gap'")
    if cbam and not residual:
        raise ValueError("cbam=True is defined on the residual model (S004 step order); set residual=True.")
    inputs, x = _stem(input_size, augment, seed)
    if not residual:
        x = _conv(x, 64, name="s1a")
        x = layers.Dropout(0.5, name="s1_dropout")(_conv(x, 64, name="s1b"))
        x = layers.MaxPooling2D(name="s2_pool")(_conv(_conv(x, 64, False, name="s2a"), 64, False, name="s2b"))
        x = _conv(_conv(x, 128, name="s3a"), 128, name="s3b")
        x = layers.MaxPooling2D(name="s4_pool")(_conv(_conv(x, 128, False, name="s4a"), 128, False, name="s4b"))
        x = _conv(_conv(x, 256, name="s5a"), 256, name="s5b", out_name="last_conv")
    else:
        for stage, filters in enumerate((64, 128, 256), start=1):
            for block in (1, 2):
                x = _residual_block(x, filters, name=f"stage{stage}_block{block}")
            if cbam:
                x = CBAM(cbam_reduction, name=f"stage{stage}_cbam")(x)
            if stage == 1:
                x = layers.Dropout(0.5, name="stage1_dropout")(x)
            if stage < 3:
                x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        x = layers.Identity(name="last_conv")(x)
    outputs = _dense_head(x, head, num_classes)
    default = "baseline_cnn" if not residual else ("gap_cnn" if head == "gap" else
                                                   "cbam_cnn" if cbam else "residual_cnn")
    return keras.Model(inputs, outputs, name=name or default)


def build_small_cnn(num_classes: int = 7, input_size: int = config.IMAGE_SIZE, augment: str = "basic",
                    width: int = 32, seed: int | None = None, name: str = "small_cnn") -> keras.Model:
    """A small CNN for the quick-start job and smoke runs (~0.3 M params): three conv stages, GAP.

    BN momentum 0.9 (not 0.99) so the moving statistics settle within the few steps of a sample run.
    """
    inputs, x = _stem(input_size, augment, seed)
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        x = _conv(x, filters, padding="same", name=f"stage{stage}a", bn_momentum=0.9)
        x = _conv(x, filters, padding="same", name=f"stage{stage}b", out_name="last_conv" if stage == 3 else None,
                  bn_momentum=0.9)
        if stage < 3:
            x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = layers.Dropout(0.3, name="dropout")(layers.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(x), name=name)


# CLI names -> builders. Every builder accepts num_classes, input_size, augment, seed.
MODELS = {
    "small_cnn": build_small_cnn,
    "baseline_cnn": build_s004,
    "residual_cnn": partial(build_s004, residual=True),
    "cbam_cnn": partial(build_s004, residual=True, cbam=True),
    "gap_cnn": partial(build_s004, residual=True, cbam=True, head="gap"),
}


def build_model(name: str, **kwargs) -> keras.Model:
    """Build a kit model by its CLI name (see MODELS)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = MODELS[name](**kwargs)
    if name != "small_cnn" and "name" not in kwargs:
        model.name = name
    return model


def trainable_params(model: keras.Model) -> int:
    """Trainable weights only (papers count these; count_params() adds BN moving statistics)."""
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))
