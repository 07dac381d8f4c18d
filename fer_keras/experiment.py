"""One run end to end: load data, build, train, save `.keras`, evaluate on the test split, write a
results JSON with its provenance and the report figures. The CLI `train` and full-mode notebooks call it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from fer_keras import config, data, evaluation, flops, modelfile, models, provenance, training
from fer_keras.recipes import (  # noqa: F401 - the recipes, where notebooks have always found them
    CKPLUS_RECIPE, DISTILL_RECIPE, DISTILL_RUNS, LABEL_RUNS, PAPER_RUNS, S000_RECIPE, S001_RECIPE, S002_RECIPE,
    S004_RECIPE, S004_STEPS, SMOKE, SMOKE_LABELS, SMOKE_PAPER, SPEED_RECIPE, SPEED_RUNS, STEPS, RunConfig, distils,
    step_config)


def train_and_evaluate(model="small_cnn", source="sample", *, verbose=None, command=None, time_limit_minutes=None,
                       resume="auto", state_dir=None, started=None, devices=None, **settings) -> dict:
    """Train `model` on Training (minus a stratified validation slice), test once on `test_split`.

    `settings` are the run's other fields (recipes.RunConfig lists them with their defaults and meaning).
    Writes under out_dir: model.keras, results.json, history.csv, learning_curves.png,
    confusion_matrix.png, per_class.csv. Returns the results dict.

    The other arguments belong to this session, not to the run, and may differ when it is resumed:
    resume: 'auto' continues an interrupted run of the same configuration from its last finished epoch
    (state in config.run_state_dir(out_dir), or `state_dir`); True requires one; False starts over.
    started: time.perf_counter() when the command started (the CLI passes it, so a budget and `wall_seconds`
    include Python's and TensorFlow's start-up); default: now. time_limit_minutes: stop this session after
    that long and stay resumable. devices: synchronous data-parallel training (training.data_parallel):
    None/1, a count or 'all'; batch_size stays the global batch.
    """
    import sys

    run = RunConfig(model=model, source=source, **settings)
    wall_start = time.perf_counter() if started is None else started
    verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_dir = Path(state_dir) if state_dir else config.run_state_dir(out)
    saved = _saved_state(state_dir, run, resume)
    scope, distribution = training.data_parallel(devices, run.batch_size)  # checked before loading; 1 device: no-op
    keras.utils.set_random_seed(run.seed)
    splits = data.load_dataset(run.source, run.label_mode, usages=["Training", run.test_split])
    train_all, test = splits["Training"], splits[run.test_split]
    label_set = run.label_mode.partition(":")[0]
    class_names = config.LABEL_SETS[label_set]
    soft_labels = train_all.y.ndim == 2  # the label mode's own soft labels (FER+ probabilities)
    if (run.label_smoothing or run.mix) and train_all.y.ndim == 1:  # smoothing and mixing need one-hot targets
        train_all = train_all._replace(y=np.eye(len(class_names), dtype=np.float32)[train_all.y])
    fold_record, folds, teachers_held_out_val = None, None, None  # out-of-fold distillation
    keep = np.ones(len(train_all.y), bool)  # the faces this run may train on
    if run.leave_out_fold is not None or run.teacher_folds:
        left_out, k = config.parse_fold(run.leave_out_fold) if run.leave_out_fold else (None, len(run.teachers))
        folds = data.training_folds(train_all.y, k, config.FOLD_SEED)
        fold_record = {"k": k, "seed": config.FOLD_SEED, "label_mode": run.label_mode, "of_faces": len(folds)}
        if left_out is not None:  # a teacher: Training without fold `left_out` (and without the validation slice
            keep, folds = folds != left_out, None  # below: the slice a student of this seed and fraction keeps)
            fold_record["left_out"] = left_out
            if run.val_fraction:
                fold_record["val_held_out"] = {"fraction": run.val_fraction, "seed": run.seed}
        else:  # a student: each teacher must have left out its fold of these faces (checked before any work)
            check_fold_teachers(run.teachers, fold_record)
    val_record = {"fraction": run.val_fraction, "seed": run.seed, "label_mode": run.label_mode,
                  "of_faces": len(train_all.y)} if run.val_fraction else None  # the slice, as a teacher's file says it
    if run.teachers and val_record:
        teachers_held_out_val = teachers_held_out(run.teachers, val_record)
    if run.val_fraction:  # from all of Training, so that a fold teacher holds out the same slice as its student
        tr, va = data.holdout_split(train_all.y, run.val_fraction, run.seed)
        tr = tr[keep[tr]]
        val = data.Split(train_all.x[va], train_all.y[va], train_all.rows[va])
    else:
        tr, va, val = np.flatnonzero(keep), None, None
    train = data.Split(train_all.x[tr], train_all.y[tr], train_all.rows[tr])
    fold_of = None if folds is None else {"train": folds[tr]} | ({"val": folds[va]} if va is not None else {})
    soft = train.y.ndim == 2

    precision = training.resolve_precision(run.precision, run.model)
    with scope:  # build, compile and fit on every device (keras.distribution / tf.distribute)
        build_args = dict(num_classes=len(class_names), input_size=run.input_size, augment=run.augment,
                          seed=run.seed, **(run.model_kwargs or {}))
        with training.dtype_policy(precision):
            net = models.build_model(run.model, **build_args)
        if run.fused_batch_norm:
            training.fuse_batch_norm(net)
        if (run.model_kwargs or {}).get("whiten") and not saved:  # a resumed run loads its stem with its weights
            models.whiten_stem(net, train.x)
        steps_per_epoch = -(-len(train.y) // run.batch_size)
        lr, schedule, budget_s = run.learning_rate, None, None
        if run.budget_minutes:
            # The time left after loading, less a reserve for testing and saving, is the training budget.
            budget_s = 60 * run.budget_minutes * 0.98 - 10 - (time.perf_counter() - wall_start)
            if budget_s <= 0:
                raise ValueError(f"--budget {run.budget_minutes} min leaves no time to train after loading the "
                                 "data; give a larger budget.")
        schedule_used = "budget" if run.budget_minutes else run.lr_schedule
        fit_epochs = 100_000 if run.budget_minutes else run.epochs  # a budget run stops at its deadline
        if schedule_used == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(run.learning_rate, run.epochs * steps_per_epoch)
        elif schedule_used == "budget":
            views = config.TTA_VIEWS.get(run.tta, 1) + (run.tta != "none")  # + the single-crop score
            tail = views * len(test.y) / len(val.y) if val is not None else 1.0
            eval_steps = -(-len(val.y) // run.batch_size) if val is not None else 0
            schedule = training.BudgetSchedule(run.learning_rate, None if budget_s else run.epochs * steps_per_epoch,
                                               budget_s, run.warmup, tail_factor=tail, eval_steps=eval_steps,
                                               progress_bar=verbose == 1 and budget_s is not None)
        elif schedule_used not in (None, "s000_step"):
            raise ValueError(f"lr_schedule {run.lr_schedule!r}: choose None, 'cosine', 's000_step' or 'budget'")
        fit_model, teacher_seconds, label_accuracy = net, None, None
        if run.teachers:
            if soft_labels and not run.label_smoothing:
                raise ValueError("distillation here takes integer labels; use a ':majority' label mode")
            # Precomputed, a face's soft label is the teachers' on the whole face, for every random crop of it (as
            # its hard label is); live, the teachers see the student's own crops.
            size = config.IMAGE_SIZE if run.precompute_teachers else net.input_shape[1]
            teachers = [_teacher(p, size, run.teacher_tta) for p in run.teachers]
            if run.precompute_teachers:  # the teachers run once over the faces, not at every step
                tick = time.perf_counter()
                def logits(s, part):  # out of fold: each face's from the teacher that left its fold out
                    return (training.out_of_fold_logits(teachers, s.x, fold_of[part]) if run.teacher_folds
                            else training.teacher_logits(teachers, s.x))

                train, val = (None if s is None else s._replace(y=training.pack_targets(
                    data.hard_labels(s.y), logits(s, part))) for part, s in (("train", train), ("val", val)))
                teachers, teacher_seconds = None, round(time.perf_counter() - tick, 2)
                # how often a soft label's top class is the face's label (out of fold: faces its teacher never saw)
                label_accuracy = {part: round(float(np.mean(s.y[:, 1:].argmax(1) == s.y[:, 0])), 4)
                                  for part, s in (("train", train), ("val", val)) if s is not None}
            fit_model = training.Distiller(net, teachers, run.distill_alpha, run.distill_temperature,
                                           label_smoothing=run.label_smoothing)
        distilling = fit_model is not net  # a Distiller: its own loss (smoothing inside), integer labels scored
        training.compile_model(fit_model, lr, run.optimizer, soft_labels=soft and not distilling,
                               weight_decay=run.weight_decay, loss=run.loss, focal_alpha=run.focal_alpha,
                               focal_gamma=run.focal_gamma, label_smoothing=0.0 if distilling else run.label_smoothing,
                               ema=run.ema)
        weights = data.class_weights(data.hard_labels(train.y), len(class_names)) if run.class_weights else None
        best = out / "best.weights.h5"
        callbacks = training.make_callbacks(best if val is not None else None, run.reduce_lr_patience,
                                            run.early_stopping_patience)
        if run.lr_schedule == "s000_step":
            callbacks.append(keras.callbacks.LearningRateScheduler(training.S000StepDecay(run.learning_rate)))
        timer = training.TimeLimit(60 * time_limit_minutes) if time_limit_minutes else None
        checkpoint = training.RunCheckpoint(state_dir, schedule, provenance=provenance.provenance(command))
        callbacks = ([schedule] * bool(schedule) + [training.StopOnNaN()] + callbacks + [timer] * bool(timer)
                     + [checkpoint])
        initial_epoch = 0
        if saved:
            state = training.RunCheckpoint.resume(fit_model, state_dir)
            initial_epoch, checkpoint.history = state["epochs_done"], state["history"]
            checkpoint.seconds_before = state.get("train_seconds") or 0.0
            checkpoint.first_epoch, checkpoint.sessions = initial_epoch, state.get("sessions")  # earlier sessions
            if schedule:
                schedule.step, schedule.elapsed = state["step"], state["train_seconds"]
            _restore_trackers(callbacks, state["history"])
            print(f"resuming {out} from epoch {initial_epoch} ({state_dir})", flush=True)
        else:
            _write_run_file(state_dir, run)
        start = time.perf_counter()
        fit_verbose = 2 if schedule is not None and schedule.bar is not None else verbose  # one bar: the time left
        training.fit(fit_model, train, val, fit_epochs, run.batch_size, weights, callbacks, run.seed, fit_verbose,
                     crop=net.input_shape[1], initial_epoch=initial_epoch, mix=run.mix, mix_alpha=run.mix_alpha)
    train_seconds = time.perf_counter() - start
    run_train_seconds = schedule.seconds() if schedule else checkpoint.seconds()  # all sessions, at the stop
    trained_at = time.perf_counter()
    history = checkpoint.history
    if best.exists() and schedule_used != "budget":
        fit_model.load_weights(best)  # the best epoch by validation accuracy (a budget run keeps its last)
    if precision != "float32":  # save and test a float32 twin: the file does not depend on how it was trained
        with training.dtype_policy("float32"):
            twin = models.build_model(run.model, **build_args)
        twin.set_weights(net.get_weights())
        net = twin
    meta = modelfile.make_metadata(net, label_set, model=run.model, augment=run.augment,
                                   **({"val_held_out": val_record} if val_record else {}),
                                   **({"out_of_fold": fold_record} if run.leave_out_fold is not None else {}))
    modelfile.save_model(net, out / "model.keras", meta)

    loaded = modelfile.LoadedModel.from_keras(net, meta, out / "model.keras")
    metrics = evaluation.evaluate_model(loaded, test, run.tta)
    size = net.input_shape[1]
    extra = {}
    if size < config.IMAGE_SIZE and run.tta != "ten_crop":
        extra["test_ten_crop"] = evaluation.evaluate_model(loaded, test, "ten_crop")
    elif run.tta != "none":
        extra["test_single_crop"] = evaluation.evaluate_model(loaded, test, "none")
    for target in run.cross_label_tests or ():  # notebook 14: every labeling scored on FER+ majority and FER2013
        other = data.load_dataset(run.source, target, usages=[run.test_split])[run.test_split]
        extra.setdefault("test_on", {})[target] = evaluation.cross_label_metrics(loaded, other, target)
    epochs_run = len(history.get("loss", []))
    results = {
        "run": out.name, "model": run.model, "params": int(net.count_params()),
        "trainable_params": models.trainable_params(net), "flops": flops.count_flops(net),
        "data": {"source": str(run.source), "label_mode": run.label_mode, "train_n": len(train.y),
                 "val_n": len(val.y) if val is not None else 0,
                 "val": f"stratified {run.val_fraction:.0%} of Training (seed {run.seed})" if val else "none",
                 "test_split": run.test_split, "test_n": len(test.y)},
        "config": run.record(),
        "input_shape": list(net.input_shape[1:]),
        "precision_used": precision, "lr_schedule_used": schedule_used, "distribution": distribution,
        **({"teacher_logits_seconds": teacher_seconds} if teacher_seconds is not None else {}),
        **({"teacher_label_accuracy": label_accuracy} if label_accuracy else {}),
        **({"teachers_held_out_val": teachers_held_out_val} if teachers_held_out_val is not None else {}),
        "epochs_run": epochs_run,
        "stopped_by_time_limit": bool(timer and timer.stopped),
        "stopped_by_budget": bool(schedule and schedule.stopped),
        "resumed_from_epoch": initial_epoch or None,
        **({"sessions": checkpoint.sessions_so_far(epochs_run)} if initial_epoch else {}),  # who ran which epochs
        "train_seconds": round(run_train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(1, epochs_run - initial_epoch), 2),
        "history": history,
        "test": metrics,
        **extra,
    }
    results["wall_seconds"] = round(time.perf_counter() - wall_start, 2)  # start-up + load + train + save + test
    # Where this session's wall time went (a budget run reserves 2 % + 10 s, and the BudgetSchedule's measured
    # validation and predicted test time, for what follows training).
    results["phase_seconds"] = {"start_up_and_load": round(start - wall_start, 2), "train": round(train_seconds, 2),
                                "save_and_test": round(time.perf_counter() - trained_at, 2)}
    if run.budget_minutes:
        results["within_budget"] = results["wall_seconds"] <= 60 * run.budget_minutes
    results["latency_batch1"] = evaluation.latency_ms(net.predict_on_batch, size) | {
        "what": "Keras predict_on_batch, one face, default threads, this run's hardware"}
    results["provenance"] = provenance.provenance(command)
    results["out_dir"] = str(out)
    write_report(results, out)
    if not results["stopped_by_time_limit"]:  # a run cut by --time-limit stays resumable
        training.atomic_write_text(state_dir / "state.json", json.dumps({"finished": True, "out_dir": str(out)}))
        (state_dir / "state.weights.h5").unlink(missing_ok=True)
    return results


def _write_run_file(state_dir: Path, run: RunConfig) -> None:
    """run.json: the run's configuration, so `train --resume` can continue it (and a clone can, from a
    committed copy of the state folder)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.weights.h5").unlink(missing_ok=True)
    (state_dir / "state.json").unlink(missing_ok=True)
    record = {"args": run.key(), "out_dir": str(Path(run.out_dir).resolve())}
    training.atomic_write_text(state_dir / "run.json", json.dumps(record, indent=1))


def _saved_state(state_dir: Path, run: RunConfig, resume) -> bool:
    """True when there is an unfinished checkpoint of this very run to continue."""
    run_file, state_file = state_dir / "run.json", state_dir / "state.json"
    found = run_file.is_file() and state_file.is_file() and (state_dir / "state.weights.h5").is_file()
    same = found and run.same_key(json.loads(run_file.read_text()).get("args", {}))
    if resume is True and not same:
        raise ValueError(f"{state_dir}: no unfinished checkpoint of this run to resume"
                         + (" (its run.json has other settings)" if found else "")
                         + ". Fix: start it without --resume.")
    if found and not (resume and same):
        done = json.loads(state_file.read_text())["epochs_done"]
        print(f"starting over: the unfinished checkpoint in {state_dir} ({done} epochs) is replaced"
              + ("" if same else " (it had other settings)"), flush=True)
    return bool(resume) and same


def _restore_trackers(callbacks, history: dict) -> None:
    """After a resume, callbacks that track the best epoch so far start from the history, not from scratch."""
    for cb in callbacks:
        monitor = getattr(cb, "monitor", None)
        if monitor in history and history[monitor] and hasattr(cb, "best"):
            cb.best = (max if "acc" in monitor else min)(history[monitor])


def resume_run(path, time_limit_minutes=None, verbose=None, command=None, started=None, devices=None) -> dict:
    """Continue an interrupted run: `path` is its output folder, or its state folder (holding run.json;
    e.g. a copy committed so another machine can continue). devices: this session's (not part of the run)."""
    path = Path(path)
    state_dir = path if (path / "run.json").is_file() else config.run_state_dir(path)
    if not (state_dir / "run.json").is_file():
        raise ValueError(f"{path}: no run to resume (looked for run.json there and in {state_dir}). Fix: pass the "
                         "--out folder of an interrupted train command, or its state folder.")
    record = json.loads((state_dir / "run.json").read_text())
    state = json.loads((state_dir / "state.json").read_text()) if (state_dir / "state.json").is_file() else {}
    if state.get("finished"):
        raise ValueError(f"{path}: that run finished; its results are in {record['out_dir']}.")
    unknown = sorted(set(record["args"]) - set(RunConfig().key()))
    if unknown:
        raise ValueError(f"{state_dir / 'run.json'}: settings this version of the kit does not know "
                         f"({', '.join(unknown)}). Fix: resume with the version that started the run, or start over.")
    return train_and_evaluate(**record["args"], time_limit_minutes=time_limit_minutes, verbose=verbose,
                              command=command, started=started, devices=devices, resume=True, state_dir=state_dir)


def check_fold_teachers(paths, folds: dict) -> None:
    """Out-of-fold distillation's teachers, in fold order: teacher i must have left out fold i of the same k folds
    of the same faces (its model file's out_of_fold record: k, seed, label mode, number of faces). Else one line."""
    for i, path in enumerate(paths):
        record = dict(modelfile.read_metadata(path).get("out_of_fold") or {})
        record.pop("val_held_out", None)
        want = folds | {"left_out": i}
        if record != want:
            raise ValueError(f"--teacher-folds: teacher {i + 1}, {path}, must have left out fold {i}/{folds['k']} of "
                             f"these {folds['of_faces']} {folds['label_mode']} Training faces; its file says "
                             f"{record or 'it left no fold out'}. Fix: train it with --leave-out-fold "
                             f"{i}/{folds['k']} (same --labels) and give the teachers in fold order.")


def teachers_held_out(paths, val: dict) -> bool:
    """Whether every teacher's file says it held out the student's validation slice `val` (fraction and seed of
    the same Training faces: label mode, number of faces), so that the student's validation score is clean. A
    run with a validation slice records it (val_held_out); an out-of-fold teacher inside its fold record."""
    def held(meta: dict) -> bool:
        fold = meta.get("out_of_fold") or {}
        return meta.get("val_held_out") == val or (
            fold.get("val_held_out") == {"fraction": val["fraction"], "seed": val["seed"]}
            and (fold.get("label_mode"), fold.get("of_faces")) == (val["label_mode"], val["of_faces"]))
    return all(held(modelfile.read_metadata(p)) for p in paths)


def _teacher(path, size: int, tta: str = "none") -> keras.Model:
    """A saved kit model as a frozen teacher taking the student's input size (centre-cropped if smaller); with
    `tta` ('flip', 'ten_crop'), the mean of its logits over those views of the whole face (a student of 48)."""
    teacher = modelfile.load_model(path).keras_model
    own = teacher.input_shape[1]
    if tta != "none":
        if size != config.IMAGE_SIZE:
            raise ValueError(f"teacher TTA needs a student that sees whole {config.IMAGE_SIZE}-pixel faces; this one "
                             f"takes {size}. Fix: add --precompute-teachers, or drop --teacher-tta or --input-size.")
        return models.with_tta(teacher, tta)
    if own == size:
        return teacher
    if own > size:
        raise ValueError(f"{path}: teacher input {own} is larger than the student's {size}; give the student "
                         "the larger input.")
    inp = keras.Input((size, size, teacher.input_shape[-1]))
    return keras.Model(inp, teacher(keras.layers.CenterCrop(own, own)(inp)), name=f"{teacher.name}_at_{size}")


def write_metrics_report(metrics: dict, out_dir, title: str = "Confusion matrix") -> None:
    """per_class.csv and confusion_matrix.png for a metrics dict, under out_dir."""
    import matplotlib.pyplot as plt

    from fer_keras import viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(metrics["per_class"]).T.to_csv(out / "per_class.csv")
    fig = viz.plot_confusion_matrix(metrics["confusion_matrix"], metrics["class_names"], title=title)
    viz.save_fig(fig, out / "confusion_matrix.png")
    plt.close(fig)


def write_report(results: dict, out: Path) -> None:
    """results.json, history.csv, per_class.csv, learning_curves.png, confusion_matrix.png."""
    import matplotlib.pyplot as plt

    from fer_keras import viz

    out = Path(out)
    training.atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    pd.DataFrame(results["history"]).rename_axis("epoch").to_csv(out / "history.csv")
    test = results["test"]
    write_metrics_report(test, out, f"{results['model']} on {results['data']['test_split']} "
                                               f"(acc {test['accuracy']:.3f})")
    fig = viz.plot_history(results["history"])
    viz.save_fig(fig, out / "learning_curves.png")
    plt.close(fig)


def require_teacher(step: str | None, kwargs: dict) -> None:
    """A distilling step with no teacher would quietly train the student alone under the distilled name: refuse."""
    if distils(step) and not kwargs.get("teachers"):
        raise ValueError(f"{step} distils from a teacher and none was given. Fix: --teacher MODEL.keras (CLI and "
                         f"scripts/full_runs.py) or run_step('{step}', teachers=[...]); "
                         "experiment.available_teachers() lists the saved runs.")


def run_dir(step: str, mode: str | None = None, runs_dir="runs") -> Path:
    """Where run_step keeps a step's run (model.keras, results.json, figures)."""
    return Path(runs_dir) / (mode or config.run_mode()) / step


def demo_model(full_step: str = "07_augmentation", mode: str | None = None, runs_dir="runs") -> tuple[dict, Path]:
    """(results, model path) of the model notebooks 11-13 analyse. Full mode: `full_step`'s run (reused
    when it exists). Smoke mode: a small CNN trained for three epochs on the sample, cached, ten times
    cheaper than the S004 models so that CI stays fast (its numbers exercise the code, nothing more)."""
    mode = mode or config.run_mode()
    if mode == "full":
        return run_step(full_step, mode, runs_dir), run_dir(full_step, mode, runs_dir) / "model.keras"
    out = run_dir("smoke_small_cnn", mode, runs_dir)
    cached = out / "results.json"
    if cached.exists() and (out / "model.keras").exists():
        return json.loads(cached.read_text()), out / "model.keras"
    return train_and_evaluate("small_cnn", "sample", epochs=3, seed=0, out_dir=out), out / "model.keras"


def available_teachers(mode: str | None = None, runs_dir="runs", k: int = 1, exclude=("tiny_cnn",),
                       label_mode: str = "fer2013") -> list[str]:
    """The k most accurate saved runs of this mode trained on `label_mode` (model.keras paths), for distillation."""
    found = []
    for res in Path(runs_dir, mode or config.run_mode()).glob("*/results.json"):
        r = json.loads(res.read_text())
        if r.get("model") not in exclude and r.get("data", {}).get("label_mode") == label_mode \
                and (res.parent / "model.keras").exists():
            found.append((r["test"]["accuracy"], str(res.parent / "model.keras")))
    return [path for _, path in sorted(found, reverse=True)[:k]]


def run_step(step: str, mode: str | None = None, runs_dir="runs", retrain=False, **overrides) -> dict:
    """Train and test one S004 step, or reuse `runs_dir/<mode>/<step>/results.json` when it was made
    with the same configuration (so notebook N+1 does not retrain notebook N's model)."""
    mode = mode or config.run_mode()
    kwargs = step_config(step, mode, **overrides)
    require_teacher(step, kwargs)
    out = run_dir(step, mode, runs_dir)
    cached = out / "results.json"
    if cached.exists() and not retrain:
        results = json.loads(cached.read_text())
        if RunConfig(**kwargs).matches(results):
            return results
    return train_and_evaluate(out_dir=out, **kwargs)


def compare(runs: dict[str, dict], per_class: str = "recall") -> pd.DataFrame:
    """Before/after table from results dicts: params, MFLOPs, s/epoch, accuracy (single crop, and ten-crop
    when the run has it), macro-F1, ms per face, and `per_class` ('recall' or 'f1') for every class."""
    rows = {}
    for name, r in runs.items():
        test = r["test"]
        single = r.get("test_single_crop", test)
        ten = test if test.get("tta") == "ten_crop" else r.get("test_ten_crop")
        row = {"params": r["params"], "MFLOPs": round(r.get("flops", 0) / 1e6, 1),
               "s/epoch": r["seconds_per_epoch"], "epochs": r["epochs_run"],
               "accuracy": round(single["accuracy"], 4)}
        if ten is not None:
            row["acc ten-crop"] = round(ten["accuracy"], 4)
        row["macro-F1"] = round(single["macro_f1"], 4)
        if "latency_batch1" in r:
            row["ms/face"] = round(r["latency_batch1"]["median_ms"], 2)
        row |= {f"{per_class} {c}": round(v[per_class], 3) for c, v in single["per_class"].items()}
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def label_table(runs: dict[str, dict], source="sample", runs_dir="runs", mode=None) -> pd.DataFrame:
    """Notebook 14's table: each run's model scored on the FER+ majority PublicTest (8 classes, classes
    matched by name; FER+'s protocol), and on its own labels' PublicTest."""
    test = data.load_dataset(source, "ferplus8", usages=["PublicTest"])["PublicTest"]
    rows = {}
    for step, r in runs.items():
        loaded = modelfile.load_model(run_dir(step, mode, runs_dir) / "model.keras")
        plus = evaluation.cross_label_metrics(loaded, test, "ferplus8")
        rows[step] = {"trained on": r["data"]["label_mode"], "train faces": r["data"]["train_n"],
                      "FER+ majority test acc": round(plus["accuracy"], 4),
                      "FER+ majority macro-F1": round(plus["macro_f1"], 4),
                      "own-label test acc": round(r["test"]["accuracy"], 4), "own test n": r["test"]["n"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def ckplus_cv(scheme: str = "subject", k: int = 10, model: str = "small_cnn", source=None, seed: int = 0,
              model_kwargs: dict | None = None, verbose=0, command=None, init_from=None, fresh: bool = False,
              state_file=None, **recipe) -> dict:
    """k-fold cross-validation on CK+ with subject-independent folds ('subject') or the seed's leaky
    per-class folds ('leaky'), same model and recipe (CKPLUS_RECIPE, overridable); one fresh model per
    fold, trained for a fixed number of epochs (no early stopping, so the test fold is never consulted).
    source: 'sample' (bundled 24 subjects), a CK+48 CSV, or None (found through $FER_KERAS_DATA).
    init_from: a kit .keras model (e.g. trained on FER2013): every fold fine-tunes its network under a new
    CK+ head (models.new_head; the classes both label sets share keep their weights), and `model` /
    `model_kwargs` are not used. fresh=True: that same network re-initialised, the from-scratch twin.
    state_file: a JSON where each finished fold's accuracy is kept, so an interrupted run continues at the next
    fold (each fold is seeded on its own, so skipping finished ones changes nothing). A resumed run's record
    lists its 'sessions': the folds each one ran and its provenance (None for a state written before sessions
    were kept), since the session that writes the results file did not run the earlier folds."""
    if scheme not in ("subject", "leaky"):
        raise ValueError(f"scheme {scheme!r}: choose 'subject' or 'leaky'")
    cfg = CKPLUS_RECIPE | recipe
    ck = data.load_ckplus(data.sample_path("ckplus") if str(source) == "sample" else source)
    folds = data.subject_kfold(ck.y, ck.subject, k, seed) if scheme == "subject" else data.leaky_kfold(ck.y, k)
    leaks = data.fold_leakage(folds, ck.subject)
    names = config.LABEL_SETS["ckplus"]
    base = modelfile.load_model(init_from) if init_from else None
    key = json.loads(json.dumps({"scheme": scheme, "k": k, "model": model, "model_kwargs": model_kwargs, "seed": seed,
                                 "config": cfg, "faces": len(ck.y), "fresh": fresh,
                                 "init_from": provenance.sha256(init_from) if init_from else None}))
    done = json.loads(Path(state_file).read_text()) if state_file and Path(state_file).is_file() else {}
    accuracies = done.get("fold_accuracy", []) if done.get("key") == key else []
    seconds_before, start = (done.get("train_seconds", 0.0) if accuracies else 0.0), time.perf_counter()
    resumed_at = len(accuracies) or None
    earlier, here = done.get("sessions") if accuracies else None, provenance.provenance(command)
    for f, (tr, te) in enumerate(folds):
        if f < len(accuracies):
            continue  # finished in an earlier session
        keras.utils.set_random_seed(seed + f)
        if base is not None:
            net = models.new_head(base.keras_model, base.metadata["class_names"], names, fresh=fresh)
        else:
            net = models.build_model(model, num_classes=len(names), augment=cfg["augment"], seed=seed,
                                     **(model_kwargs or {}))
        training.compile_model(net, cfg["learning_rate"], "sgd", weight_decay=cfg["weight_decay"])
        schedule = training.S000StepDecay(cfg["learning_rate"], cfg["decay_start"], 1, cfg["decay_factor"])
        training.fit(net, data.Split(ck.x[tr], ck.y[tr], tr), None, cfg["epochs"], cfg["batch_size"],
                     callbacks=[keras.callbacks.LearningRateScheduler(schedule)], seed=seed + f, verbose=verbose)
        probs = evaluation.predict_proba(lambda v, n=net: keras.ops.convert_to_numpy(n(v, training=False)),
                                         ck.x[te], net.input_shape[1])
        accuracies.append(float((probs.argmax(axis=1) == ck.y[te]).mean()))
        if state_file:
            ran = training.session_log(earlier, "folds", resumed_at or 0, here, f + 1)
            training.atomic_write_text(state_file, json.dumps({"key": key, "fold_accuracy": accuracies,
                                                               "train_seconds": seconds_before + time.perf_counter()
                                                               - start, "sessions": ran}))
    if base is not None:
        model, model_kwargs = base.metadata.get("model", base.keras_model.name), None
    start_from = ({"init_from": str(init_from), "sha256": provenance.sha256(init_from),
                   "weights": "re-initialised (same network)" if fresh else "fine-tuned, new CK+ head"}
                  if base is not None else {"weights": "random init"})
    return {"scheme": scheme, "k": k, "model": model, "model_kwargs": model_kwargs, "config": cfg, "seed": seed,
            "start_from": start_from,
            "data": {"source": str(source), "faces": len(ck.y), "subjects": len(np.unique(ck.subject))},
            "fold_accuracy": accuracies, "mean_accuracy": float(np.mean(accuracies)),
            "std_accuracy": float(np.std(accuracies)), "test_sizes": [len(te) for _, te in folds],
            "leaked_test_rows": leaks, "train_seconds": round(seconds_before + time.perf_counter() - start, 1),
            "resumed_at_fold": resumed_at,
            **({"sessions": training.session_log(earlier, "folds", resumed_at, here, k)} if resumed_at else {}),
            "provenance": here}


def run_minutes(r: dict) -> float:
    """A run's minutes from start to test. One session: its wall clock. A run resumed across sessions
    (resumed_from_epoch) records only its last session's wall clock: its training seconds over all sessions plus
    the last session's start-up, load, save and test (earlier sessions' start-up is not recorded, about a minute
    each)."""
    if not r.get("resumed_from_epoch"):
        return r["wall_seconds"] / 60
    phases = r.get("phase_seconds", {})
    return (r["train_seconds"] + phases.get("start_up_and_load", 0) + phases.get("save_and_test", 0)) / 60


def members_minutes(model_files, own_seconds: float) -> dict:
    """What an ensemble cost from scratch: each member's training run (run_minutes of the results JSON beside its
    .keras file: same stem, or results.json in a run folder) and this evaluation's `own_seconds`. total_minutes is
    None when a member's run is not found (say so rather than guess)."""
    members = {}
    for path in model_files:
        results = Path(path).with_suffix(".json")
        if not results.is_file() and Path(path).name == "model.keras":
            results = Path(path).with_name("results.json")
        members[str(path)] = round(run_minutes(json.loads(results.read_text())), 2) if results.is_file() else None
    known = None not in members.values()
    return {"member_run_minutes": members, "evaluation_seconds": round(own_seconds, 1),
            "total_minutes": round(sum(members.values()) + own_seconds / 60, 2) if known else None}


def _cpu_name(prov: dict) -> str:
    return "{model_name} fam {family} model {model}".format(**prov["hardware"]["cpu"])


def _speedrun_records(folder: Path) -> dict[str, dict]:
    """{path relative to folder, without .json: record} of results/speedrun/'s JSON files and its machine folders'
    (not config.SPEEDRUN_OTHER's), each file read once."""
    paths = sorted(folder.glob("*.json")) + sorted(p for p in folder.glob("*/*.json")
                                                   if p.parent.name not in config.SPEEDRUN_OTHER)
    return {p.relative_to(folder).with_suffix("").as_posix(): json.loads(p.read_text()) for p in paths}


def speedrun_table(folder) -> pd.DataFrame:
    """Notebook 17's table from results/speedrun/*.json and its machine folders (results/speedrun/amx/...; not
    config.SPEEDRUN_OTHER): one row per budget run, named by its path (what it changed against the speed recipe, budget,
    seed, minutes (run_minutes), the epoch a resumed run went on from, epochs, PublicTest accuracy single view and
    with the run's TTA, macro-F1, CPU, precision, what else ran)."""
    return _speedrun_table(_speedrun_records(Path(folder)))


def _speedrun_table(records: dict[str, dict]) -> pd.DataFrame:
    recipe = RunConfig(**step_config("17_speed", "full")).record()
    rows = {}
    for name, r in records.items():
        if "test" not in r or not r.get("config", {}).get("budget_minutes"):
            continue
        single = r.get("test_single_crop", r["test"])
        prov = r["provenance"]
        changed = {k: v for k, v in r["config"].items()
                   if k in recipe and k not in ("epochs", "seed", "budget_minutes") and v != recipe[k]}
        rows[name] = {
            "changed": ", ".join(f"{k}={v}" for k, v in changed.items()) or "(the recipe)",
            "budget min": r["config"]["budget_minutes"], "seed": r["config"]["seed"],
            "minutes": round(run_minutes(r), 2), "resumed at epoch": r.get("resumed_from_epoch"),
            "epochs": r["epochs_run"], "accuracy": round(single["accuracy"], 4),
            "with TTA": round(r["test"]["accuracy"], 4), "TTA": r["test"].get("tta", "none"),
            "macro-F1": round(r["test"]["macro_f1"], 4), "test n": r["test"]["n"], "cpu": _cpu_name(prov),
            "precision": r.get("precision_used", "float32"),
            "ran beside it": prov.get("load", {}).get("concurrent", "not stated")}
    return pd.DataFrame.from_dict(rows, orient="index")


def ablation_table(folder, baseline: str | None = None, names=None) -> pd.DataFrame:
    """Notebook 17's ablation: one row per run in `folder` (results JSONs of one recipe with one change each, at
    one budget): what changed against `baseline`, the budget, epochs reached, the final validation accuracy (the
    number the choice is made on) and the PublicTest accuracy (reported, never used to choose), single view and with
    the run's test-time augmentation. names: only these runs, in this order (those not run yet are left out)."""
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}
    if names is not None:
        runs = {n: runs[n] for n in names if n in runs}
    base = runs.get(baseline, {}).get("config", {}) if baseline else {}
    rows = {}
    for name, r in runs.items():
        cfg = r["config"]
        changed = {k: v for k, v in cfg.items() if base and base.get(k) != v and k != "seed"}
        hist = r["history"]
        rows[name] = {"changed": ", ".join(f"{k}={v}" for k, v in changed.items()) or "(baseline)",
                      "budget min": cfg.get("budget_minutes"), "seed": cfg["seed"], "epochs": r["epochs_run"],
                      "val accuracy": round(hist["val_accuracy"][-1], 4) if hist.get("val_accuracy") else None,
                      "test accuracy": round(r.get("test_single_crop", r["test"])["accuracy"], 4),
                      "test with its TTA": round(r["test"]["accuracy"], 4), "TTA": r["test"].get("tta", "none"),
                      "ran beside it": r["provenance"].get("load", {}).get("concurrent", "not stated")}
    return pd.DataFrame.from_dict(rows, orient="index")


def precision_table(folder) -> pd.DataFrame:
    """Does the fast precision cost accuracy? One row per results JSON in `folder` (one recipe, seed and epoch
    count, trained once per precision), float32 first: seconds per epoch, final validation accuracy, PublicTest
    single view and with TTA, the exact McNemar p of its single-view predictions against float32's (same faces),
    and its full-int8 export's size and accuracy (the saved `.keras` is float32 in both, so the export path is the
    same)."""
    from fer_keras import evaluation

    runs = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    runs.sort(key=lambda r: r.get("precision_used") != "float32")
    rows = {}
    for r in runs:
        single = r.get("test_single_crop", r["test"])
        paired = None if r is runs[0] else \
            evaluation.paired_test_from_metrics(runs[0].get("test_single_crop", runs[0]["test"]), single)
        int8 = r.get("int8", {})
        rows[r.get("precision_used", "float32")] = {
            "epochs": r["epochs_run"], "s/epoch": round(r["seconds_per_epoch"], 1),
            "val accuracy": round(r["history"]["val_accuracy"][-1], 4) if r["history"].get("val_accuracy") else None,
            "accuracy": round(single["accuracy"], 4), "with TTA": round(r["test"]["accuracy"], 4),
            "McNemar p vs float32": None if paired is None else round(paired["p_value"], 4),
            "int8 KB": round(int8["kb"]) if int8 else None,
            "int8 accuracy": round(int8["accuracy"], 4) if int8 else None, "seed": r["config"]["seed"],
            "cpu": _cpu_name(r["provenance"]), "ran beside it": r["provenance"].get("load", {}).get("concurrent")}
    return pd.DataFrame.from_dict(rows, orient="index")


def throughput_table(record: dict, model: str | None = None) -> pd.DataFrame:
    """benchmarks/train_throughput.py's record as one row per measured setting (backend, threads, allocator,
    model, precision, batch size, faces/s, GFLOP/s), fastest first; `model` keeps that model's rows only."""
    rows = [{"backend": s["backend"], "threads": s["threads"],
             "allocator": "kit (M_TOP_PAD)" if s.get("malloc_top_pad") else "malloc defaults",
             "model": r["model"], "precision": r["precision"], "batch": r["batch_size"],
             "faces/s": r["faces_per_s"], "GFLOP/s": r["achieved_gflops"]}
            for s in record["settings"] for r in s["runs"] if model is None or r["model"] == model]
    columns = ["backend", "threads", "allocator", "model", "precision", "batch", "faces/s", "GFLOP/s"]
    return pd.DataFrame(rows, columns=columns).sort_values("faces/s", ascending=False, ignore_index=True)


def speedrun_points(folder) -> dict:
    """{'speed_cnn, CPU, precision': [(minutes (run_minutes), PublicTest accuracy with the run's TTA), ...]} of
    the budget runs, one series per machine and precision (speed differs several-fold between them), for
    viz.plot_time_to_accuracy. Ensembles (`evaluate A.keras B.keras ... --json`, with the minutes everything took
    from scratch in cost.total_minutes) are their own series per machine and member count."""
    records = _speedrun_records(Path(folder))
    points: dict = {}
    for _, row in _speedrun_table(records).iterrows():
        label = f"speed_cnn, {row['cpu'].split(' fam')[0]}, {row['precision']}"
        points.setdefault(label, []).append((row["minutes"], row["with TTA"]))
    for r in records.values():
        total = r.get("cost", {}).get("total_minutes") if "members" in r else None
        if total:
            label = f"ensemble of {len(r['members'])} speed_cnn, {_cpu_name(r['provenance']).split(' fam')[0]}"
            points.setdefault(label, []).append((total, r["accuracy"]))
    return points
