"""Augmentation as Keras preprocessing layers inside the model, plus test-time augmentation.

The layers run on every backend and only in training (`fit`); at inference they are the identity.
keras-cv is not needed: flips, rotation, translation, zoom, contrast (and RandAugment, MixUp,
CutMix) are Keras 3 core layers. The kit composes flip, rotation, shift, zoom and multiplicative
brightness into one layer (`RandomFaceAffine`): one affine resampling per face, as ImageDataGenerator
does, instead of one per core layer (about 3x less work, less blur); the core layers remain an option.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from fer_keras.config import MIX_ALPHA, MIX_CHOICES
from fer_keras.layers import RandomFaceAffine

# S004's ImageDataGenerator: rotation 20 degrees, horizontal flip, shifts 0.1 ("basic"); "strong" adds
# its planned zoom 0.1 and multiplicative brightness [0.8, 1.2]; "full" also adds contrast 0.2.
AUGMENT_LEVELS = ("none", "basic", "strong", "full")
# LEVEL+erase: the level, then random erasing (Zhong et al. 2020, keras.layers.RandomErasing): with probability
# ERASE_P one rectangle of 2-33 % of the face is filled with noise, so the model cannot lean on one face part.
ERASE, ERASE_P = "+erase", 0.5
AUGMENT_CHOICES = AUGMENT_LEVELS + tuple(level + ERASE for level in AUGMENT_LEVELS[1:])


def build_augmentation(level: str = "basic", seed: int | None = None, name: str = "augment"):
    """A Sequential of random layers for images in [0, 255] (N, H, W, 1); None for level 'none'. A level may end
    in '+erase' (AUGMENT_CHOICES): random erasing after it."""
    if level not in AUGMENT_CHOICES:
        raise ValueError(f"augmentation level {level!r}: choose one of {AUGMENT_CHOICES}")
    if level == "none":
        return None
    base, erase = level.removesuffix(ERASE), level.endswith(ERASE)
    strong = base in ("strong", "full")
    stack = [RandomFaceAffine(rotation=20, shift=0.1, zoom=0.1 if strong else 0.0, flip=True,
                              brightness=(0.8, 1.2) if strong else None, seed=seed, name="face_affine")]
    if base == "full":
        stack += [layers.RandomContrast(0.2, value_range=(0, 255), seed=seed)]
    if erase:
        stack += [layers.RandomErasing(factor=(ERASE_P, ERASE_P), value_range=(0, 255), seed=seed, name="erase")]
    return keras.Sequential(stack, name=name)


def center_crop(x: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, ...) -> (N, size, size, ...) centre crop."""
    h, w = x.shape[1:3]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the image {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top:top + size, left:left + size]


def ten_crops(x: np.ndarray, size: int = 44) -> np.ndarray:
    """The ten-crop TTA views: 4 corners + centre, each also flipped -> (10, N, size, size, ...)."""
    h, w = x.shape[1:3]
    if size >= min(h, w):
        raise ValueError(f"ten-crop needs a crop smaller than the image: crop {size}, image {h}x{w}. Fix: use a "
                         f"model whose input is smaller than {h} (e.g. 44 for 48x48 faces).")
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    views = [x[:, t:t + size, l:l + size] for t, l in corners] + [center_crop(x, size)]
    return np.stack(views + [v[:, :, ::-1] for v in views])


def random_crops(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random size x size crop per image (training-time crop for models with a smaller input)."""
    n, h, w = x.shape[:3]
    tops, lefts = rng.integers(0, h - size + 1, n), rng.integers(0, w - size + 1, n)
    return np.stack([img[t:t + size, l:l + size] for img, t, l in zip(x, tops, lefts)])


def mix_batch(x: np.ndarray, y: np.ndarray, kind: str, rng: np.random.Generator, alpha: float = MIX_ALPHA,
              weights: np.ndarray | None = None):
    """Mix a training batch with a shuffled copy of itself: x float (N, H, W, ...), y one-hot or soft rows (N, C),
    optional per-face weights (N,); returns (x, y, weights) mixed with one lambda ~ Beta(alpha, alpha) per batch.

    'mixup' blends the faces, lambda * x + (1 - lambda) * x[perm]; 'cutmix' pastes a box of x[perm] covering
    1 - lambda of the face (centre drawn uniformly, clipped at the border), and lambda becomes the share of the face
    left (the papers' reference code). Labels and weights mix with the same lambda.

    Written here rather than with keras.layers.MixUp / CutMix: those draw from a stateful seed generator (and
    CutMix's `factor` is not the papers' alpha), whereas FaceBatches promises that every batch is a pure function
    of (seed, epoch, batch), so that a resumed run sees the batches it would have seen."""
    if kind not in MIX_CHOICES:
        raise ValueError(f"mix {kind!r}: choose one of {MIX_CHOICES}")
    if y.ndim != 2:
        raise ValueError("mixing needs one-hot or soft label rows (N, classes), not integer labels")
    lam, perm = float(rng.beta(alpha, alpha)), rng.permutation(len(x))
    x = np.array(x, np.float32)
    if kind == "mixup":
        x = lam * x + (1.0 - lam) * x[perm]
    else:
        h, w = x.shape[1:3]
        cut_h, cut_w = int(h * np.sqrt(1.0 - lam)), int(w * np.sqrt(1.0 - lam))
        cy, cx = rng.integers(h), rng.integers(w)
        top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
        left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
        x[:, top:bottom, left:right] = x[perm, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    y = lam * y + (1.0 - lam) * y[perm]
    if weights is not None:
        weights = lam * weights + (1.0 - lam) * weights[perm]
    return x, y.astype(np.float32), weights
