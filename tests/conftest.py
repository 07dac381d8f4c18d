"""Shared fixtures: tiny synthetic CSVs and the full data when it is there (CI has ../shared/data)."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def full_data_dir():
    """Folder with the full FER2013/FER+/CK+ files, or None."""
    for folder in [os.environ.get("FER_KERAS_DATA"), SHARED]:
        if folder and (Path(folder) / "fer2013new.csv").is_file():
            return Path(folder)
    return None


@pytest.fixture
def shared_data():
    folder = full_data_dir()
    if folder is None:
        pytest.skip("full data not available (set FER_KERAS_DATA)")
    return folder


def fer_rows(n_per_usage=(4, 2, 2), seed=0):
    """Synthetic FER2013 rows [(emotion, pixels string, usage)] covering all three usages."""
    rng = np.random.default_rng(seed)
    rows = []
    for usage, n in zip(("Training", "PublicTest", "PrivateTest"), n_per_usage):
        for i in range(n):
            px = rng.integers(0, 256, 2304)
            rows.append((i % 7, " ".join(map(str, px)), usage))
    return rows


def write_fer_csv(path, rows, header="emotion,pixels,Usage", gz=False):
    text = header + "\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows)
    path = Path(path)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def fer_csv(tmp_path):
    """A full Kaggle-format CSV with all three usages (4 Training, 2 PublicTest, 2 PrivateTest)."""
    return write_fer_csv(tmp_path / "fer2013.csv", fer_rows())
