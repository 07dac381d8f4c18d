"""FER2013 in its Kaggle CSV form (emotion,pixels,Usage), its compact .npy.xz copy and the bundled sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from fer_keras import config
from fer_keras.data.files import FerDataError, Split, _line, _read_csv, sample_path, find_data_file


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
