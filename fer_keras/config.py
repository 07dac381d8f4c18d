"""Constants shared by every stage: class names, image size, label sets, data locations.

One place for class order, so no notebook types a class list of its own (a classic FER bug).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

IMAGE_SIZE = 48  # FER2013, FER+ and the kit's CK+ copy are 48x48 grey
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
CROP_SIZE = 44  # the S000 ten-crop size

# FER2013 index order (Kaggle `emotion` column): 0 angry ... 6 neutral.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGES = ("Training", "PublicTest", "PrivateTest")

# FER+ vote columns, in the order of fer2013new.csv.
FERPLUS_VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger",
    "disgust", "fear", "contempt", "unknown", "NF",
)
# FER+ emotion column -> class name in the kit's order.
FERPLUS_TO_KIT = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}

# Label sets: name -> class names (index order). FER+ sets differ only in where contempt goes.
LABEL_SETS = {
    "fer2013": FER2013_CLASSES,
    "ferplus8": FER2013_CLASSES + ("contempt",),
    "ferplus7": FER2013_CLASSES,  # S004: contempt merged into neutral
    "ferm": FER2013_CLASSES,  # S000 FERm: contempt merged into disgust
    "ckplus": ("angry", "disgust", "fear", "happy", "sad", "surprise", "contempt"),
}
CONTEMPT_MERGE = {"ferplus8": "contempt", "ferplus7": "neutral", "ferm": "disgust"}

# CK+ CSV emotion names -> kit names.
CKPLUS_TO_KIT = {
    "anger": "angry", "contempt": "contempt", "disgust": "disgust", "fear": "fear",
    "happy": "happy", "sadness": "sad", "surprise": "surprise",
}

# Standard file names of the full data sets.
FER2013_FILES = ("fer2013.csv", "fer2013.csv.gz", "fer2013_train_publictest.csv.gz")
FERPLUS_FILES = ("fer2013new.csv",)
CKPLUS_FILES = ("ckplus48.csv.gz", "ckplus48.csv")

DATA_ENV = "FER_KERAS_DATA"
RUNS_ENV = "FER_KERAS_RUNS"
MODE_ENV = "FER_MODE"

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"


def data_dirs() -> list[Path]:
    """Folders searched for full data, in order: $FER_KERAS_DATA, ./data, ~/fer_keras_data."""
    dirs = []
    if os.environ.get(DATA_ENV):
        dirs += [Path(p).expanduser() for p in os.environ[DATA_ENV].split(os.pathsep) if p]
    dirs += [Path.cwd() / "data", Path.home() / "fer_keras_data"]
    return dirs


def run_mode() -> str:
    """'smoke' (bundled sample, 1-2 epochs) or 'full' (full data), from $FER_MODE; default full."""
    mode = os.environ.get(MODE_ENV, "full").strip().lower()
    if mode not in ("smoke", "full"):
        raise ValueError(f"{MODE_ENV}={mode!r}: use 'smoke' or 'full'.")
    return mode


def run_state_dir(out_dir) -> Path:
    """Where a training run keeps its resumable state (checkpoint, run.json): outside the working tree, in
    $FER_KERAS_RUNS or ~/.cache/fer_keras/runs, one folder per output folder (its name + a hash of its path)."""
    out = Path(out_dir).expanduser().resolve()
    root = Path(os.environ.get(RUNS_ENV) or Path.home() / ".cache" / "fer_keras" / "runs").expanduser()
    return root / f"{out.name}-{hashlib.sha1(str(out).encode()).hexdigest()[:8]}"
