"""One run end to end: load data, build, train, save `.keras`, evaluate on the test split, write a
results JSON with its provenance and the report figures. The CLI `train` and full-mode notebooks call it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from fer_keras import config, data, evaluation, modelfile, models, provenance, training


def train_and_evaluate(model="small_cnn", source="sample", label_mode="fer2013", epochs=10, batch_size=64,
                       learning_rate=1e-3, optimizer="adam", augment="basic", class_weights=False,
                       reduce_lr_patience=None, early_stopping_patience=None, val_fraction=0.1,
                       test_split="PublicTest", seed=0, input_size=config.IMAGE_SIZE, tta="none",
                       out_dir="runs/quickstart", weight_decay=None, verbose=None, command=None) -> dict:
    """Train `model` on Training (minus a stratified validation slice), test once on `test_split`.

    Writes under out_dir: model.keras, results.json, history.csv, learning_curves.png,
    confusion_matrix.png, per_class.csv. Returns the results dict.
    """
    import sys

    verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    splits = data.load_dataset(source, label_mode, usages=["Training", test_split])
    train_all, test = splits["Training"], splits[test_split]
    tr, va = data.holdout_split(train_all.y, val_fraction, seed)
    train = data.Split(train_all.x[tr], train_all.y[tr], train_all.rows[tr])
    val = data.Split(train_all.x[va], train_all.y[va], train_all.rows[va])
    label_set = label_mode.partition(":")[0]
    class_names = config.LABEL_SETS[label_set]
    soft = train.y.ndim == 2

    net = models.build_model(model, num_classes=len(class_names), input_size=input_size, augment=augment, seed=seed)
    training.compile_model(net, learning_rate, optimizer, soft_labels=soft, weight_decay=weight_decay)
    weights = data.class_weights(train.y, len(class_names)) if class_weights else None
    best = out / "best.weights.h5"
    callbacks = training.make_callbacks(best, reduce_lr_patience, early_stopping_patience)
    start = time.perf_counter()
    history = training.fit(net, train, val, epochs, batch_size, weights, callbacks, seed, verbose)
    train_seconds = time.perf_counter() - start
    if best.exists() and not early_stopping_patience:
        net.load_weights(best)  # reload the best epoch before testing
    meta = modelfile.make_metadata(net, label_set, model=model, augment=augment)
    modelfile.save_model(net, out / "model.keras", meta)

    loaded = modelfile.LoadedModel(out / "model.keras", meta,
                                   lambda x: np.asarray(net.predict(x, batch_size=256, verbose=0)), net)
    metrics = evaluation.evaluate_model(loaded, test, tta)
    results = {
        "run": out.name, "model": model, "params": int(net.count_params()),
        "trainable_params": models.trainable_params(net),
        "data": {"source": str(source), "label_mode": label_mode, "train_n": len(train.y), "val_n": len(val.y),
                 "val": f"stratified {val_fraction:.0%} of Training (seed {seed})",
                 "test_split": test_split, "test_n": len(test.y)},
        "config": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                   "optimizer": optimizer, "augment": augment, "class_weights": bool(class_weights),
                   "reduce_lr_patience": reduce_lr_patience, "early_stopping_patience": early_stopping_patience,
                   "input_size": input_size, "weight_decay": weight_decay, "seed": seed},
        "epochs_run": len(history.history["loss"]),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(1, len(history.history["loss"])), 2),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "test": metrics,
        "provenance": provenance.provenance(command),
    }
    write_report(results, out)
    return results


def write_report(results: dict, out: Path) -> None:
    """results.json, history.csv, per_class.csv, learning_curves.png, confusion_matrix.png."""
    import pandas as pd

    from fer_keras import viz

    out = Path(out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    pd.DataFrame(results["history"]).rename_axis("epoch").to_csv(out / "history.csv")
    test = results["test"]
    pd.DataFrame(test["per_class"]).T.to_csv(out / "per_class.csv")
    import matplotlib.pyplot as plt

    for name, fig in (("learning_curves.png", viz.plot_history(results["history"])),
                      ("confusion_matrix.png", viz.plot_confusion_matrix(
                          test["confusion_matrix"], test["class_names"],
                          title=f"{results['model']} on {results['data']['test_split']} "
                                f"(acc {test['accuracy']:.3f})"))):
        viz.save_fig(fig, out / name)
        plt.close(fig)
