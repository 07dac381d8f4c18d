"""Data layer: FER2013 (Kaggle CSV), FER+ votes, CK+48, splits, class weights, the bundled sample.

Everything returns plain numpy arrays: images are uint8 (N, 48, 48), labels int64 (N,) or, for
soft labels, float32 (N, C). No TensorFlow here, so the same loaders feed every Keras backend.
Bad input raises `FerDataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from fer_keras import config


class FerDataError(ValueError):
    """A data file is missing or malformed; the message names the file, the line and the fix."""


class Split(NamedTuple):
    """One split: x uint8 (N, 48, 48); y int64 (N,) or float32 (N, C); rows: source CSV row indices."""

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray


class CkPlus(NamedTuple):
    """CK+48: x uint8 (N, 48, 48), y int64 (N,) in LABEL_SETS['ckplus'] order, and per-row ids."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    sequence: np.ndarray
    frame: np.ndarray


def _line(row: int) -> str:
    """Human line number of a 0-based data row (the header is line 1)."""
    return f"line {row + 2} (data row {row})"


# ---------------------------------------------------------------------------------------------
# Finding files
# ---------------------------------------------------------------------------------------------
_FETCH_HINT = (
    "Fix: pass the path, set $FER_KERAS_DATA to the folder that holds it, or on Colab run "
    "`fer_keras.data.fetch_fer2013_kaggle()`; for a quick try use the bundled sample "
    "(`--data sample`, `load_sample()`, or FER_MODE=smoke in notebooks)."
)


def find_data_file(names: tuple[str, ...], path: str | os.PathLike | None = None) -> Path:
    """Return `path` if given (must exist), else the first of `names` in `config.data_dirs()`."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            for name in names:
                if (p / name).is_file():
                    return p / name
            raise FerDataError(f"{p}: folder has none of {', '.join(names)}. {_FETCH_HINT}")
        if not p.is_file():
            raise FerDataError(f"{p}: file not found. {_FETCH_HINT}")
        return p
    tried = []
    for folder in config.data_dirs():
        for name in names:
            tried.append(str(folder / name))
            if (folder / name).is_file():
                return folder / name
    raise FerDataError(f"none of {', '.join(names)} found; looked in: {'; '.join(tried)}. {_FETCH_HINT}")


def sample_path(name: str = "fer2013") -> Path:
    """Path of a bundled sample file: 'fer2013', 'ferplus' or 'ckplus'."""
    files = {
        "fer2013": "fer2013_sample.csv.gz",
        "ferplus": "fer2013new_sample.csv",
        "ckplus": "ckplus48_sample.csv.gz",
    }
    if name not in files:
        raise ValueError(f"unknown sample {name!r}; choose one of {sorted(files)}")
    return config.SAMPLE_DIR / files[name]


def fetch_fer2013_kaggle(dest: str | os.PathLike = "data") -> Path:
    """Download FER2013 with kagglehub (needs Kaggle credentials; for Colab) and return the CSV path."""
    try:
        import kagglehub
    except ImportError as err:  # pragma: no cover - depends on the user's machine
        raise FerDataError("kagglehub is not installed. Fix: `pip install kagglehub`, or upload fer2013.csv "
                           "and pass its path.") from err
    folder = Path(kagglehub.dataset_download("deadskull7/fer2013"))  # pragma: no cover - network
    return find_data_file(config.FER2013_FILES, folder)  # pragma: no cover - network


# ---------------------------------------------------------------------------------------------
# CSV reading with clear errors
# ---------------------------------------------------------------------------------------------
def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read a CSV (plain or .gz) as strings; check that `columns` are present."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # extra fields must not be dropped silently
            df = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserWarning as err:
        raise FerDataError(f"{path}: line 2 has more fields than the header ({err}). Fix: each row needs exactly "
                           f"the columns {','.join(columns)}; repair that line.") from err
    except FileNotFoundError as err:
        raise FerDataError(f"{path}: file not found. {_FETCH_HINT}") from err
    except pd.errors.EmptyDataError as err:
        raise FerDataError(f"{path}: the file is empty. Fix: re-download the {what} CSV.") from err
    except pd.errors.ParserError as err:
        raise FerDataError(f"{path}: not a valid {what} CSV ({err}). Fix: each row needs exactly the "
                           f"columns {','.join(columns)}; re-download or repair that line.") from err
    except (UnicodeDecodeError, EOFError, OSError) as err:
        raise FerDataError(f"{path}: cannot be read as a {what} CSV ({type(err).__name__}: {err}). "
                           "Fix: check the file is a complete, uncorrupted CSV (or .csv.gz).") from err
    except ValueError as err:  # e.g. a .zip holding several files
        raise FerDataError(f"{path}: cannot be read as a {what} CSV ({err}). Fix: give one CSV, a .csv.gz, or a "
                           ".zip holding exactly one CSV.") from err
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FerDataError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns)}). "
                           f"Fix: a {what} CSV needs the header {','.join(columns)}.")
    return df


_PIXEL_BYTES = np.zeros(256, bool)
_PIXEL_BYTES[[ord(c) for c in "0123456789 \t\r\n"]] = True


def parse_pixels(pixels: list[str], path: Path | str = "<pixels>", chunk: int = 1000) -> np.ndarray:
    """Space-separated grey values, one string per row -> uint8 (N, 48, 48).

    Vectorised over the bytes of `chunk` rows at a time (cache-sized; no Python loop per row or pixel);
    rows are checked for stray characters, pixel count and range, and the first bad row is named.
    """
    out = np.empty((len(pixels), config.IMAGE_SIZE, config.IMAGE_SIZE), np.uint8)
    for start in range(0, len(pixels), chunk):
        out[start:start + chunk] = _parse_chunk(pixels[start:start + chunk], path, start)
    return out


def _parse_chunk(pixels: list[str], path, offset: int) -> np.ndarray:
    """parse_pixels for one chunk; `offset` is the chunk's first data row (for error messages)."""
    n = len(pixels)
    blob = np.frombuffer("\n".join(pixels).encode("ascii", errors="replace") + b"\n", np.uint8)
    newlines = np.flatnonzero(blob == 10)
    ok = _PIXEL_BYTES[blob]
    if not ok.all():
        pos = int(np.argmin(ok))
        row = int(np.searchsorted(newlines, pos))
        raise FerDataError(f"{path}: {_line(row + offset)}: pixels must be integers 0-255 separated by spaces, found "
                           f"{chr(blob[pos])!r} in {pixels[row].strip()[:40]!r}... Fix: repair or delete that row.")
    d = blob - 48  # uint8 wrap-around: digits are exactly the bytes with d < 10
    digit = d < 10
    d = np.where(digit, d, 0).astype(np.int16)
    end = digit.copy()
    end[:-1] &= ~digit[1:]
    counts = np.diff(np.cumsum(end, dtype=np.int32)[newlines], prepend=0)
    wrong = np.flatnonzero(counts != config.N_PIXELS)
    if wrong.size:
        row = int(wrong[0])
        raise FerDataError(f"{path}: {_line(row + offset)}: {counts[row]} pixel values, expected {config.N_PIXELS} "
                           f"(48x48). Fix: the row is truncated or not a 48x48 face; repair or delete it.")
    too_long = digit[3:] & digit[2:-1] & digit[1:-2] & digit[:-3]
    if too_long.any():  # a number of 4+ digits: zero-padded ("0012") or too large; the slow path tells which
        return _parse_rows(pixels, path, offset)
    value = d.copy()  # value of the number ending at each byte (numbers have at most 3 digits)
    value[1:] += 10 * d[:-1]
    value[2:] += 100 * d[:-2] * digit[1:-1]
    over = np.flatnonzero(end & (value > 255))
    if over.size:
        row = int(np.searchsorted(newlines, over[0]))
        start = newlines[row - 1] + 1 if row else 0
        value = blob[start:newlines[row]].tobytes().decode()
        bad = next(v for v in value.split() if int(v) > 255)
        raise FerDataError(f"{path}: {_line(row + offset)}: pixel value {bad} is above 255. "
                           "Fix: pixels are 8-bit grey values; repair or delete that row.")
    values = value[end]
    return values.astype(np.uint8).reshape(n, config.IMAGE_SIZE, config.IMAGE_SIZE)


def _parse_rows(pixels: list[str], path, offset: int) -> np.ndarray:
    """parse_pixels row by row, for the rare chunk with numbers of 4+ digits (zero-padded values are fine)."""
    out = np.empty((len(pixels), config.IMAGE_SIZE, config.IMAGE_SIZE), np.uint8)
    for row, text in enumerate(pixels):
        values = [int(v) for v in text.split()]  # only digits and spaces got here
        bad = next((v for v in values if v > 255), None)
        if bad is not None:
            raise FerDataError(f"{path}: {_line(row + offset)}: pixel value {bad} is above 255. "
                               "Fix: pixels are 8-bit grey values; repair or delete that row.")
        out[row] = np.asarray(values, np.uint8).reshape(config.IMAGE_SIZE, config.IMAGE_SIZE)
    return out


def _int_column(df: pd.DataFrame, col: str, path: Path, n_classes: int) -> np.ndarray:
    """A label column as int64, each in [0, n_classes)."""
    values = pd.to_numeric(df[col].str.strip(), errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values >= n_classes) | (values % 1 != 0))
    if bad.size:
        row = int(bad[0])
        raise FerDataError(f"{path}: {_line(row)}: {col}={df[col].iloc[row]!r} is not a label 0-{n_classes - 1}. "
                           f"Fix: FER2013 labels are 0 angry, 1 disgust, ..., 6 neutral; repair that row.")
    return values.astype(np.int64)


def _usage_column(df: pd.DataFrame, path: Path) -> np.ndarray:
    usage = df["Usage"].str.strip().to_numpy()
    bad = np.flatnonzero(~np.isin(usage, config.USAGES))
    if bad.size:
        row = int(bad[0])
        raise FerDataError(f"{path}: {_line(row)}: Usage={usage[row]!r} is not one of {', '.join(config.USAGES)}. "
                           "Fix: use the official Kaggle split names.")
    return usage


# ---------------------------------------------------------------------------------------------
# FER2013
# ---------------------------------------------------------------------------------------------
def read_fer2013(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole FER2013 CSV -> (x uint8 (N,48,48), y int64 (N,), usage str (N,)), file order kept."""
    path = find_data_file(config.FER2013_FILES, path)
    df = _read_csv(path, ("emotion", "pixels", "Usage"), "FER2013 (emotion,pixels,Usage)")
    if len(df) == 0:
        raise FerDataError(f"{path}: header only, no rows. Fix: re-download the FER2013 CSV.")
    y = _int_column(df, "emotion", path, len(config.FER2013_CLASSES))
    usage = _usage_column(df, path)
    x = parse_pixels(df["pixels"].tolist(), path)
    return x, y, usage


def _by_usage(x, y, usage, usages, path) -> dict[str, Split]:
    present = [u for u in config.USAGES if np.any(usage == u)]
    wanted = present if usages is None else list(usages)
    for u in wanted:
        if u not in config.USAGES:
            raise FerDataError(f"unknown usage {u!r}; choose from {', '.join(config.USAGES)}.")
        if u not in present:
            raise FerDataError(f"{path}: has no {u} rows (it has {', '.join(present)}). "
                               f"Fix: use a CSV that contains {u}, or pick another split.")
    return {u: Split(x[usage == u], y[usage == u], np.flatnonzero(usage == u)) for u in wanted}


def load_fer2013(path: str | os.PathLike | None = None, usages=None) -> dict[str, Split]:
    """FER2013 per official usage: {'Training': Split, 'PublicTest': ..., 'PrivateTest': ...}.

    Any subset of usages may be present in the file; `usages` selects (default: all present).
    """
    path = find_data_file(config.FER2013_FILES, path)
    x, y, usage = read_fer2013(path)
    return _by_usage(x, y, usage, usages, path)


# ---------------------------------------------------------------------------------------------
# FER+
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# CK+
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Splits, weights, samples
# ---------------------------------------------------------------------------------------------
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


def to_model_input(x: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 1) -> float32 (N, H, W, 1) in [0, 255]; models rescale inside."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"images of shape {x.shape}: expected (N, H, W) or (N, H, W, 1) grey images.")
    return x.astype(np.float32)


def load_sample(usages=None) -> dict[str, Split]:
    """The bundled FER2013 sample (50 faces per class from Training and from PublicTest)."""
    return load_fer2013(sample_path("fer2013"), usages)


COMPACT_FILES = {"Training": "fer2013_training.npy.xz", "PublicTest": "fer2013_publictest.npy.xz",
                 "PrivateTest": "fer2013_privatetest.npy.xz"}


def load_compact(folder, usages=None) -> dict[str, Split]:
    """The compact copy of FER2013 (`fer2013_<usage>.npy.xz` uint8 (N, 48, 48) + `fer2013_labels.csv`
    with row,emotion,Usage), as used on machines with a small transfer limit. Any usage whose .npy.xz
    is present is returned (or those in `usages`)."""
    import lzma

    folder = Path(folder)
    labels = _read_csv(folder / "fer2013_labels.csv", ("row", "emotion", "Usage"), "FER2013 labels")
    y_all = _int_column(labels, "emotion", folder / "fer2013_labels.csv", len(config.FER2013_CLASSES))
    rows_all, usage = labels["row"].astype(int).to_numpy(), _usage_column(labels, folder / "fer2013_labels.csv")
    present = [u for u, name in COMPACT_FILES.items() if (folder / name).is_file()]
    out = {}
    for u in usages or present:
        if u not in present:
            raise FerDataError(f"{folder}: no {COMPACT_FILES.get(u, u)}. Fix: copy it there or pick another split.")
        try:
            x = np.load(lzma.open(folder / COMPACT_FILES[u]))
        except (lzma.LZMAError, EOFError, ValueError, OSError) as err:
            raise FerDataError(f"{folder / COMPACT_FILES[u]}: unreadable ({err}). Fix: copy the file again.") from err
        mask = usage == u
        if x.shape != (int(mask.sum()), config.IMAGE_SIZE, config.IMAGE_SIZE) or x.dtype != np.uint8:
            raise FerDataError(f"{folder / COMPACT_FILES[u]}: shape {x.shape} {x.dtype}, expected "
                               f"({int(mask.sum())}, 48, 48) uint8 to match fer2013_labels.csv. Fix: use matching files.")
        out[u] = Split(x, y_all[mask], rows_all[mask])
    return out


def _fer_and_ferplus_paths(source) -> tuple[Path, Path | None]:
    """The FER2013 CSV of `source` and the fer2013new.csv beside it (or None: searched later)."""
    if str(source) == "sample":
        return sample_path("fer2013"), sample_path("ferplus")
    fer = find_data_file(config.FER2013_FILES, None if source in (None, "fer2013") else source)
    beside = [fer.parent / n for n in config.FERPLUS_FILES if (fer.parent / n).is_file()]
    return fer, beside[0] if beside else None


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
