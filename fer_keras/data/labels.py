"""Comparing the two labelings face by face (notebooks 00 and 14): FER2013's label against FER+'s votes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from fer_keras import config
from fer_keras.data.fer2013 import _by_usage, read_fer2013
from fer_keras.data.ferplus import align_ferplus, ferplus_labels, read_ferplus_votes
from fer_keras.data.files import Split, _fer_and_ferplus_paths, find_data_file


def load_with_votes(source: str | os.PathLike | None = "sample", usages=None) -> dict[str, tuple[Split, np.ndarray]]:
    """{usage: (FER2013 split with its original labels, FER+ votes (N, 10) of the same rows)}: every face,
    including those FER+ drops, for comparing the two labelings face by face."""
    fer_file, plus_file = _fer_and_ferplus_paths(source)
    plus_file = find_data_file(config.FERPLUS_FILES, plus_file)
    x, y, usage = read_fer2013(fer_file)
    votes, plus_usage, _ = read_ferplus_votes(plus_file)
    aligned = votes[align_ferplus(usage, plus_usage, fer_file, plus_file)]
    splits = _by_usage(x, y, usage, usages, fer_file)
    return {u: (s, aligned[s.rows]) for u, s in splits.items()}



def label_agreement(y_fer: np.ndarray, votes: np.ndarray) -> pd.DataFrame:
    """Per FER2013 class: faces, how FER+'s majority rule labels them (same class, another class, or
    dropped as unknown / not a face / no majority), and the mean share of votes for the FER2013 label."""
    plus, keep = ferplus_labels(votes, "majority", "ferplus8")
    names8 = config.LABEL_SETS["ferplus8"]
    same = np.array([keep[i] and names8[plus[i]] == config.FER2013_CLASSES[c] for i, c in enumerate(y_fer)])
    share = vote_share(y_fer, votes)
    rows = {}
    for c, name in enumerate(config.FER2013_CLASSES):
        m = y_fer == c
        n = int(m.sum())
        rows[name] = {"faces": n, "FER+ same": same[m].mean() if n else np.nan,
                      "FER+ other class": (keep[m] & ~same[m]).mean() if n else np.nan,
                      "FER+ dropped": (~keep[m]).mean() if n else np.nan,
                      "votes for the FER2013 label": share[m].mean() if n else np.nan}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.loc["all"] = {"faces": len(y_fer), "FER+ same": same.mean(), "FER+ other class": (keep & ~same).mean(),
                        "FER+ dropped": (~keep).mean(), "votes for the FER2013 label": share.mean()}
    return table



def vote_share(y_fer: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Share of each face's 10 FER+ votes that went to its FER2013 label."""
    column = [config.FERPLUS_VOTE_COLUMNS.index(next(k for k, v in config.FERPLUS_TO_KIT.items() if v == name))
              for name in config.FER2013_CLASSES]
    total = np.maximum(votes.sum(axis=1), 1e-12)
    return votes[np.arange(len(y_fer)), np.array(column)[y_fer]] / total



def most_disputed(y_fer: np.ndarray, votes: np.ndarray, k: int = 12) -> np.ndarray:
    """Indices of the k faces whose FER2013 label got the smallest share of FER+ votes (ties: the most
    spread-out votes first, by entropy), one pass over classes so every class can appear."""
    share = vote_share(y_fer, votes)
    p = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
    entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(axis=1)
    order = np.lexsort((-entropy, share))
    picked, per_class = [], {}
    for i in order:  # round-robin-ish: at most ceil(k / 7) per FER2013 class
        c = int(y_fer[i])
        if per_class.get(c, 0) < -(-k // len(config.FER2013_CLASSES)):
            picked.append(i)
            per_class[c] = per_class.get(c, 0) + 1
        if len(picked) == k:
            break
    return np.array(picked, int)
