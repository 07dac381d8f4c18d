"""Constants shared by every stage: class names, image size, label sets, data locations.

One place for class order, so no notebook types a class list of its own (a classic FER bug).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

IMAGE_SIZE = 48  # FER2013, FER+ and the kit's CK+ copy are 48x48 grey
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
CROP_SIZE = 44  # the S000 ten-crop size
FOLD_SEED = 0  # data.training_folds for out-of-fold teachers and their students: one seed, so they agree
# Test-time augmentation: name -> views a face (layers.TestTimeViews); TTA_CHOICES adds "none" (one view).
TTA_VIEWS = {"flip": 2, "ten_crop": 10}
TTA_CHOICES = ("none", *TTA_VIEWS)
# Mixing two faces of a training batch and their labels (augment.mix_batch): mixup (Zhang et al. 2018) blends the
# whole faces, CutMix (Yun et al. 2019) pastes a rectangle of one into the other. MIX_ALPHA: both papers' CIFAR
# setting, lambda ~ Beta(1, 1).
MIX_CHOICES = ("mixup", "cutmix")
MIX_ALPHA = 1.0
# Sub-folders of results/speedrun/ that are not budget runs of the speed recipe (notebook 17 gives each its own
# table); its other sub-folders hold one machine's budget runs each (speedrun/amx/).
SPEEDRUN_OTHER = ("ablation", "precision")

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
MALLOC_ENV = "FER_KERAS_MALLOC_TOP_PAD"
MALLOC_TOP_PAD = 256 * 2 ** 20  # bytes; benchmarks/README.md, "The allocator"

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


def tune_allocator(top_pad: int | None = None) -> dict:
    """Keep freed memory instead of handing it back to the system after every training step (glibc only).

    Training allocates and frees the same ~10 MB activation buffers every step. glibc's malloc returns freed
    memory at the top of its heaps to the kernel and asks for it again on the next step, and every new page is
    a page fault that the kernel fills with zeros. On the project's 2-core CPU that churn cost a large share of
    training speed (benchmarks/train_throughput.py measures both settings side by side; benchmarks/README.md).
    M_TOP_PAD is what malloc keeps (and pre-asks for) above what it needs; memory is only touched when used.

    top_pad None: $FER_KERAS_MALLOC_TOP_PAD, else MALLOC_TOP_PAD; 0 leaves glibc as it is. Called when
    fer_keras is imported; a no-op off glibc (macOS, Windows, musl). Returns what was done, for the results.
    """
    if top_pad is None:
        raw = os.environ.get(MALLOC_ENV, "").strip()
        try:
            top_pad = int(raw) if raw else MALLOC_TOP_PAD
        except ValueError:  # a bad value must not stop an import: one line, then the default
            print(f"fer_keras: {MALLOC_ENV}={raw!r} is not a number of bytes; using {MALLOC_TOP_PAD}. "
                  f"Fix: set it to a whole number such as {MALLOC_TOP_PAD}, or 0 to leave malloc alone.",
                  file=sys.stderr)
            top_pad = MALLOC_TOP_PAD
    state = {"allocator": "default", "malloc_top_pad": None}
    if top_pad <= 0:
        ALLOCATOR.update(state)
        return state
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        ok = hasattr(libc, "gnu_get_libc_version") and libc.mallopt(-2, int(top_pad)) == 1  # -2: M_TOP_PAD
    except (OSError, AttributeError, TypeError):
        ok = False
    if ok:
        state = {"allocator": "glibc", "malloc_top_pad": int(top_pad)}
    ALLOCATOR.update(state)
    return state


ALLOCATOR = {"allocator": "default", "malloc_top_pad": None}  # what tune_allocator last did


def parse_fold(text: str) -> tuple[int, int]:
    """'I/K' -> (I, K): fold I (from 0) of K folds (data.training_folds, `train --leave-out-fold`), e.g. '0/2'."""
    try:
        i, k = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"fold {text!r}: write it as I/K, fold I (from 0) of K folds, e.g. 0/2") from None
    if k < 2 or not 0 <= i < k:
        raise ValueError(f"fold {text!r}: write I/K with K at least 2 and I from 0 to K-1, e.g. 0/2")
    return i, k
