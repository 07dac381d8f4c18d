"""Finding data files and reading CSVs with clear errors: the floor every data set stands on."""

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



def _line(row: int) -> str:
    """Human line number of a 0-based data row (the header is line 1)."""
    return f"line {row + 2} (data row {row})"



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



def _fer_and_ferplus_paths(source) -> tuple[Path, Path | None]:
    """The FER2013 CSV of `source` and the fer2013new.csv beside it (or None: searched later)."""
    if str(source) == "sample":
        return sample_path("fer2013"), sample_path("ferplus")
    fer = find_data_file(config.FER2013_FILES, None if source in (None, "fer2013") else source)
    beside = [fer.parent / n for n in config.FERPLUS_FILES if (fer.parent / n).is_file()]
    return fer, beside[0] if beside else None
