"""FER+ (fer2013new.csv): ten votes per FER2013 face, aligned row by row, and the label rules built on them."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from fer_keras import config
from fer_keras.data.fer2013 import _by_usage, _usage_column, read_fer2013
from fer_keras.data.files import FerDataError, Split, _line, _read_csv, find_data_file
from fer_keras.data.splits import hard_labels


def read_ferplus_votes(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fer2013new.csv -> (votes float32 (N, 10) in FERPLUS_VOTE_COLUMNS order, usage (N,), has_name (N,))."""
    path = find_data_file(config.FERPLUS_FILES, path)
    cols = ("Usage", "Image name") + config.FERPLUS_VOTE_COLUMNS
    df = _read_csv(path, cols, "FER+ (fer2013new.csv)")
    usage = _usage_column(df, path)
    votes = df[list(config.FERPLUS_VOTE_COLUMNS)].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))
    votes = votes.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(votes).all(axis=1) | (votes < 0).any(axis=1))
    if bad.size:
        row = int(bad[0])
        raise FerDataError(f"{path}: {_line(row)}: vote counts must be non-negative numbers. "
                           "Fix: re-download fer2013new.csv (FER+ repository).")
    has_name = df["Image name"].str.strip().to_numpy() != ""
    return votes.astype(np.float32), usage, has_name



def ferplus_labels(votes: np.ndarray, mode: str = "majority", label_set: str = "ferplus8"):
    """FER+ votes (N, 10) -> (labels, keep). FER+ reference rules, see the data README.

    mode 'majority': labels int64 (N,), the class with more than half of the votes left after
    single votes are zeroed; ties and unknown/NF majorities are dropped (keep=False).
    mode 'probability': labels float32 (N, C), top classes (up to 3) covering 75 % of the votes,
    normalised; dropped when they cover no more than half or unknown/NF wins.
    label_set: 'ferplus8' (8 classes), 'ferplus7' (contempt->neutral, S004), 'ferm' (contempt->disgust, S000).
    """
    if label_set not in config.CONTEMPT_MERGE:
        raise ValueError(f"label_set {label_set!r}: choose one of {sorted(config.CONTEMPT_MERGE)}")
    v = np.where(votes <= 1.0 + np.finfo(np.float32).eps, 0.0, votes).astype(np.float64)
    total = v.sum(axis=1)
    if mode == "majority":
        top = v.max(axis=1)
        dist = np.zeros_like(v)
        win = top > 0.5 * total
        dist[np.flatnonzero(win), v[win].argmax(axis=1)] = 1.0
        dist[~win, 8] = 1.0  # unknown
    elif mode == "probability":
        dist = np.array([_ferplus_probability_row(row) for row in v])
    else:
        raise ValueError(f"mode {mode!r}: choose 'majority' or 'probability'")
    keep = dist.argmax(axis=1) < 8  # not unknown / NF
    probs = _to_label_set(dist[:, :8], label_set)
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    if mode == "majority":
        return probs.argmax(axis=1).astype(np.int64), keep
    return probs.astype(np.float32), keep



def _ferplus_probability_row(raw: np.ndarray) -> np.ndarray:
    """FER+ reference 'probability' rule for one image's outlier-cleaned votes (10,)."""
    raw = raw.copy()
    total = raw.sum()
    out = np.zeros(10)
    unknown = np.zeros(10)
    unknown[8] = 1.0
    part, count, valid = 0.0, 0, True
    while part < 0.75 * total and count < 3 and valid:
        top = raw.max()
        for i in range(10):
            if raw[i] == top:
                out[i], raw[i] = top, 0.0
                part += out[i]
                count += 1
                if i >= 8:  # unknown or NF among the tied top classes
                    valid = False
                    if out.sum() > top:
                        out[i] = 0.0
                        count -= 1
                    break
    if out.sum() <= 0.5 * total or count > 3:
        return unknown
    return out / out.sum()



def _to_label_set(p8: np.ndarray, label_set: str) -> np.ndarray:
    """(N, 8) in FER+ column order -> (N, C) in the kit's order for `label_set`."""
    names = config.LABEL_SETS[label_set]
    out = np.zeros((len(p8), len(names)))
    for j, col in enumerate(config.FERPLUS_VOTE_COLUMNS[:8]):
        kit = config.FERPLUS_TO_KIT[col]
        if kit == "contempt":
            kit = config.CONTEMPT_MERGE[label_set]
        out[:, names.index(kit)] += p8[:, j]
    return out



def align_ferplus(fer_usage: np.ndarray, ferplus_usage: np.ndarray, fer_path, ferplus_path) -> np.ndarray:
    """Index into the FER+ rows for each FER2013 row. Whole usages may be absent from the FER2013 CSV
    (e.g. PrivateTest), but each usage present must have exactly FER+'s row count, in order."""
    index = np.empty(len(fer_usage), np.int64)
    for u in config.USAGES:
        mine, theirs = np.flatnonzero(fer_usage == u), np.flatnonzero(ferplus_usage == u)
        if mine.size == 0:
            continue
        if mine.size != theirs.size:
            raise FerDataError(
                f"{ferplus_path}: has {theirs.size} {u} rows but {fer_path} has {mine.size}: the files are not "
                "aligned row by row. Fix: use the original Kaggle fer2013.csv (or a copy that keeps whole "
                "usages in the original order) with the unmodified fer2013new.csv.")
        index[mine] = theirs
    return index



def load_ferplus(fer_path=None, ferplus_path=None, mode="majority", label_set="ferplus8",
                 usages=None) -> dict[str, Split]:
    """FER2013 images with FER+ labels, per usage; images FER+ drops (unknown, NF, no name) removed."""
    fer_file = find_data_file(config.FER2013_FILES, fer_path)
    plus_file = find_data_file(config.FERPLUS_FILES, ferplus_path)
    x, _, usage = read_fer2013(fer_file)
    votes, plus_usage, has_name = read_ferplus_votes(plus_file)
    index = align_ferplus(usage, plus_usage, fer_file, plus_file)
    labels, keep = ferplus_labels(votes[index], mode, label_set)
    keep &= has_name[index]
    rows = np.flatnonzero(keep)
    splits = _by_usage(x[keep], labels[keep], usage[keep], usages, fer_file)
    return {u: Split(s.x, s.y, rows[s.rows]) for u, s in splits.items()}



def compare_labels(fer: Split, plus: Split, plus_label_set: str = "ferplus8") -> pd.DataFrame:
    """Crosstab of FER2013 labels (rows) vs FER+ majority labels (columns) on the images both keep."""
    common, i_fer, i_plus = np.intersect1d(fer.rows, plus.rows, return_indices=True)
    plus_y = hard_labels(plus.y[i_plus])
    names = config.LABEL_SETS[plus_label_set]
    return pd.crosstab(pd.Categorical(np.array(config.FER2013_CLASSES)[fer.y[i_fer]], config.FER2013_CLASSES),
                       pd.Categorical(np.array(names)[plus_y], names), rownames=["FER2013"],
                       colnames=["FER+"], dropna=False)
