"""Arrays for training: hard labels, class weights, stratified picks and hold-out splits, model input."""

from __future__ import annotations

import numpy as np


def hard_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels (N,) from int labels (N,) or soft labels (N, C) (their argmax)."""
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y



def class_weights(y: np.ndarray, n_classes: int | None = None) -> dict[int, float]:
    """Balanced class weights (scikit-learn) for integer or one-hot/soft labels -> {class: weight}."""
    from sklearn.utils.class_weight import compute_class_weight

    y = hard_labels(y)
    present = np.unique(y)
    w = compute_class_weight("balanced", classes=present, y=y)
    out = {int(c): float(v) for c, v in zip(present, w)}
    for c in range(n_classes or 0):
        out.setdefault(c, 1.0)
    return out



def stratified_indices(y: np.ndarray, n_per_class: int, seed: int = 0) -> np.ndarray:
    """Up to `n_per_class` random indices of each class (sorted), for samples and smoke runs."""
    y = hard_labels(y)
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), min(n_per_class, int(np.sum(y == c))), replace=False)
             for c in np.unique(y)]
    return np.sort(np.concatenate(picks))



def holdout_split(y: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx): the validation set for callbacks comes from Training, so
    PublicTest stays an untouched test split."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    strat = hard_labels(y)
    classes, counts = np.unique(strat, return_counts=True)
    rare = np.isin(strat, classes[counts < 2])  # a class with one face cannot be split: it stays in training
    idx = np.flatnonzero(~rare)
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strat[idx])
    return np.sort(np.concatenate([tr, np.flatnonzero(rare)])), np.sort(va)



def training_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of every face: stratified k-fold (scikit-learn), shuffled with `seed`. Out-of-fold
    distillation uses it twice with the same labels and seed: each teacher trains without one fold
    (`leave_out_fold`), and each face's soft label comes from the teacher that left its fold out."""
    from sklearn.model_selection import StratifiedKFold

    strat = hard_labels(np.asarray(y))
    folds = np.empty(len(strat), dtype=np.int64)
    for f, (_, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(strat, strat)):
        folds[test] = f
    return folds


def to_model_input(x: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 1) -> float32 (N, H, W, 1) in [0, 255]; models rescale inside."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"images of shape {x.shape}: expected (N, H, W) or (N, H, W, 1) grey images.")
    return x.astype(np.float32)
