"""CK+48 (981 frames with subject ids) and its folds: subject-independent, and the leaky scheme kept for comparison."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from fer_keras import config
from fer_keras.data.fer2013 import parse_pixels
from fer_keras.data.files import FerDataError, _line, _read_csv, find_data_file


class CkPlus(NamedTuple):
    """CK+48: x uint8 (N, 48, 48), y int64 (N,) in LABEL_SETS['ckplus'] order, and per-row ids."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    sequence: np.ndarray
    frame: np.ndarray



def load_ckplus(path: str | os.PathLike | None = None) -> CkPlus:
    """CK+48 CSV (emotion,subject,sequence,frame,pixels) -> CkPlus with labels in LABEL_SETS['ckplus']."""
    path = find_data_file(config.CKPLUS_FILES, path)
    df = _read_csv(path, ("emotion", "subject", "sequence", "frame", "pixels"), "CK+48")
    names = config.LABEL_SETS["ckplus"]
    kit = df["emotion"].str.strip().str.lower().map(config.CKPLUS_TO_KIT)
    bad = np.flatnonzero(kit.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise FerDataError(f"{path}: {_line(row)}: emotion={df['emotion'].iloc[row]!r} is not a CK+ class "
                           f"({', '.join(config.CKPLUS_TO_KIT)}). Fix: repair that row.")
    y = np.array([names.index(k) for k in kit], np.int64)
    x = parse_pixels(df["pixels"].tolist(), path)
    return CkPlus(x, y, df["subject"].str.strip().to_numpy(), df["sequence"].str.strip().to_numpy(),
                  df["frame"].str.strip().to_numpy())



def subject_kfold(y: np.ndarray, groups: np.ndarray, k: int = 10, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-independent folds: no subject in two folds, classes stratified as far as groups allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ValueError(f"{n_groups} subjects cannot fill {k} subject-independent folds; use k <= {n_groups}.")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, groups)]



# Per-class test sizes of the leaky scheme in WuJie1010's CK.py (S000's 882/99 split is its fold 1).
CKPLUS_FULL_COUNTS = [135, 177, 75, 207, 84, 249, 54]



CKPLUS_LEAKY_TEST_COUNTS = {"angry": 12, "disgust": 18, "fear": 9, "happy": 21, "sad": 9, "surprise": 24,
                            "contempt": 6}



def leaky_kfold(y: np.ndarray, k: int = 10, test_counts: dict | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The seed's per-class folds (WuJie1010 CK.py), kept for comparison only: it leaks.

    Rows are grouped by class in LABEL_SETS['ckplus'] order (the seed's order), file order inside a
    class. t_c is the seed's per-class count on the full CK+ (12, 18, 9, 21, 9, 24, 6), else n_c // k. Fold f (1..k-1) tests positions start_c + (f-1)*t_c ... + t_c - 1 of every class c; the
    last fold tests each class's last t_c rows. As in the seed, a block can run past its class (fear:
    75 rows, t=9, so fold 9 also tests 6 happy rows). Subjects and sequences cross folds.
    """
    y = np.asarray(y)
    names = config.LABEL_SETS["ckplus"]
    order = np.argsort(y, kind="stable")
    sizes = np.bincount(y, minlength=len(names))
    if test_counts is not None:
        counts = test_counts
    elif sizes.tolist() == CKPLUS_FULL_COUNTS:
        counts = CKPLUS_LEAKY_TEST_COUNTS
    else:  # another subset (e.g. the bundled sample): blocks of n_c // k rows
        counts = {name: max(1, int(n) // k) for name, n in zip(names, sizes)}
    ends = np.cumsum(sizes)
    folds = []
    for f in range(1, k + 1):
        pos = []
        for c, name in enumerate(names):
            t = counts.get(name, sizes[c] // k)
            start = ends[c] - sizes[c]
            pos += [ends[c] - 1 - i if f == k else start + (f - 1) * t + i for i in range(t)]
        test = np.unique(order[np.clip(pos, 0, len(y) - 1)])
        folds.append((np.setdiff1d(np.arange(len(y)), test), test))
    return folds



def fold_leakage(folds, groups: np.ndarray) -> list[int]:
    """Per fold: how many test rows share a group (subject) with the training rows."""
    return [int(np.isin(groups[te], groups[tr]).sum()) for tr, te in folds]
