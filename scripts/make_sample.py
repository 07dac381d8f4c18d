"""Rebuild the bundled sample in fer_keras/sample/ from the full data (run once; output is committed).

    python scripts/make_sample.py /path/to/data   # folder with FER2013 CSV, fer2013new.csv, ckplus48.csv.gz

FER2013: 50 faces per class from Training and from PublicTest (seed 0), Kaggle format, original
order; FER+: the matching fer2013new.csv rows (their `Image name` keeps the original row number);
CK+: every frame of 24 random subjects (seed 0).
"""

import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fer_keras import config, data

PER_CLASS, CK_SUBJECTS, SEED = 50, 24, 0


def main(folder: str) -> None:
    folder = Path(folder)
    out = config.SAMPLE_DIR
    fer_file = data.find_data_file(config.FER2013_FILES, folder)
    fer = pd.read_csv(fer_file, dtype=str, keep_default_na=False)
    keep = []
    for usage in ("Training", "PublicTest"):
        rows = np.flatnonzero(fer["Usage"].to_numpy() == usage)
        y = fer["emotion"].to_numpy()[rows].astype(int)
        keep.append(rows[data.stratified_indices(y, PER_CLASS, SEED)])
    keep = np.sort(np.concatenate(keep))
    with gzip.open(out / "fer2013_sample.csv.gz", "wt", compresslevel=9) as f:
        fer.iloc[keep].to_csv(f, index=False)
    plus = pd.read_csv(folder / "fer2013new.csv", dtype=str, keep_default_na=False)
    plus.iloc[keep].to_csv(out / "fer2013new_sample.csv", index=False)
    ck = pd.read_csv(folder / "ckplus48.csv.gz", dtype=str)
    subjects = np.random.default_rng(SEED).choice(sorted(ck["subject"].unique()), CK_SUBJECTS, replace=False)
    with gzip.open(out / "ckplus48_sample.csv.gz", "wt", compresslevel=9) as f:
        ck[ck["subject"].isin(subjects)].to_csv(f, index=False)
    print(f"{len(keep)} FER2013 rows, {ck['subject'].isin(subjects).sum()} CK+ rows written to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
