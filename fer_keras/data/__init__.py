"""Data layer: FER2013 (Kaggle CSV), FER+ votes, CK+48, splits, class weights, the bundled sample.

Everything returns plain numpy arrays: images are uint8 (N, 48, 48), labels int64 (N,) or, for
soft labels, float32 (N, C). No TensorFlow here, so the same loaders feed every Keras backend.
Bad input raises `FerDataError` naming the file, the line and the fix.

One module per data set, imported from the bottom up (nothing imports this package's `__init__` back):
  files.py    finding files, reading CSVs with clear errors, FerDataError, Split
  fer2013.py  the Kaggle CSV (pixels, labels, Usage), the compact .npy.xz copy, the bundled sample
  splits.py   hard labels, class weights, stratified picks, hold-out splits, training folds, model input
  ferplus.py  FER+ votes and their label rules (majority, probability; ferplus8/7, FERm)
  ckplus.py   CK+48 and its folds (subject-independent; the leaky scheme for comparison)
  labels.py   FER2013 labels against FER+ votes, face by face (notebooks 00 and 14)
Every public name is re-exported here, so `from fer_keras import data; data.load_fer2013(...)` works.
"""

from __future__ import annotations

import os
from pathlib import Path

from fer_keras import config
from fer_keras.data.ckplus import (CKPLUS_FULL_COUNTS, CKPLUS_LEAKY_TEST_COUNTS, CkPlus, fold_leakage,
                                   leaky_kfold, load_ckplus, subject_kfold)
from fer_keras.data.fer2013 import (COMPACT_FILES, load_compact, load_fer2013, load_sample,
                                    parse_pixels, read_fer2013)
from fer_keras.data.ferplus import (align_ferplus, compare_labels, ferplus_labels, load_ferplus,
                                    read_ferplus_votes)
from fer_keras.data.files import (FerDataError, Split, _fer_and_ferplus_paths, fetch_fer2013_kaggle,
                                  find_data_file, sample_path)
from fer_keras.data.labels import label_agreement, load_with_votes, most_disputed, vote_share
from fer_keras.data.splits import (class_weights, hard_labels, holdout_split, stratified_indices,
                                   to_model_input, training_folds)

__all__ = ["CKPLUS_FULL_COUNTS", "CKPLUS_LEAKY_TEST_COUNTS", "COMPACT_FILES", "CkPlus", "FerDataError",
           "Split", "align_ferplus", "class_weights", "compare_labels", "ferplus_labels",
           "fetch_fer2013_kaggle", "find_data_file", "fold_leakage", "hard_labels", "holdout_split",
           "label_agreement", "leaky_kfold", "load_ckplus", "load_compact", "load_dataset", "load_fer2013",
           "load_ferplus", "load_sample", "load_with_votes", "most_disputed", "parse_pixels",
           "read_fer2013", "read_ferplus_votes", "sample_path", "stratified_indices", "subject_kfold",
           "to_model_input", "training_folds", "vote_share"]


def load_dataset(source: str | os.PathLike | None = "sample", label_mode: str = "fer2013",
                 usages=None) -> dict[str, Split]:
    """One entry point for the CLI and notebooks -> {usage: Split}.

    source: 'sample' (bundled), a FER2013 CSV path or a folder holding it (or holding only the compact
    `.npy.xz` copy), or None / 'fer2013' (full data found through $FER_KERAS_DATA, ./data, ~/fer_keras_data).
    label_mode: 'fer2013' (original labels), or a FER+ label set ('ferplus8', 'ferplus7', 'ferm'),
    optionally ':probability' for soft labels (default ':majority'); fer2013new.csv is looked for
    beside the CSV first.
    """
    if str(source) not in ("sample", "None", "fer2013") and (Path(source) / COMPACT_FILES["Training"]).is_file() \
            and label_mode == "fer2013" and not any((Path(source) / n).is_file() for n in config.FER2013_FILES):
        return load_compact(source, usages)
    fer, plus = _fer_and_ferplus_paths(source)
    if label_mode == "fer2013":
        return load_fer2013(fer, usages)
    label_set, _, mode = label_mode.partition(":")
    if label_set not in config.CONTEMPT_MERGE:
        raise ValueError(f"label mode {label_mode!r}: use 'fer2013' or one of {sorted(config.CONTEMPT_MERGE)} "
                         "with an optional ':majority' or ':probability'")
    return load_ferplus(fer, plus, mode or "majority", label_set, usages)
