"""The kit's own Keras layers, backend-agnostic (keras.ops only), registered for `.keras` loading."""

from __future__ import annotations

import keras
from keras import layers, ops


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
        """(channel gate (N, C), spatial gate (N, H, W, 1)) for input x (N, H, W, C)."""
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
