"""Checker functions for the exercise notebooks: each runs the student's answer on a tiny fixed input
and raises AssertionError with a fix-it hint, or prints one line when the answer is right."""

from __future__ import annotations

import numpy as np


def _ok(name: str) -> None:
    print(f"{name}: correct")


def check_class_counts(fn) -> None:
    """fn(y, n_classes) -> int array (n_classes,) of label counts, zeros for absent classes."""
    y = np.array([0, 3, 3, 6, 0, 3])
    got = np.asarray(fn(y, 7))
    assert got.shape == (7,), f"expected 7 counts (one per class), got shape {got.shape}; hint: np.bincount(..., minlength=)"
    assert got.tolist() == [2, 0, 0, 3, 0, 0, 1], f"counts {got.tolist()} are wrong for y={y.tolist()}"
    assert np.asarray(fn(np.array([], int), 3)).tolist() == [0, 0, 0], "an empty label array has zero counts"
    _ok("class_counts")


def check_leaked_test_rows(fn) -> None:
    """fn(train_idx, test_idx, subjects) -> number of test rows whose subject also appears in training."""
    subjects = np.array(["a", "a", "b", "b", "c", "c"])
    assert int(fn(np.array([0, 2]), np.array([1, 3, 4]), subjects)) == 2, \
        "rows 1 (a) and 3 (b) share a subject with training rows 0 and 2: expected 2; hint: np.isin"
    assert int(fn(np.array([0, 1]), np.array([4, 5]), subjects)) == 0, "no subject shared: expected 0"
    _ok("leaked_test_rows")
