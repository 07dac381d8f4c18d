"""Issue 16: wall-clock budgets, the budget learning-rate schedule, resumable runs, the precision default."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from fer_keras import cli, config, data, experiment, models, training

AVX2_ONLY = "processor : 0\nflags : fpu sse sse2 avx avx2 fma\n"
ZEN4 = "processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"


# ------------------------------------------------------------------ schedule
def test_warmup_linear_decay_shape():
    f = training.warmup_linear_decay
    assert f(0.0) == 0.0 and f(0.05) == pytest.approx(0.5) and f(0.1) == pytest.approx(1.0)
    assert f(0.55) == pytest.approx(0.5) and f(1.0) == 0.0 and f(1.7) == 0.0
    assert f(0.5, warmup=0.0) == pytest.approx(0.5)
    values = [f(p / 100) for p in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # never rises after the warm-up


class _Probe(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _tiny_model():
    model = models.build_small_cnn(width=4, augment="none", input_size=48)
    training.compile_model(model, 1e-2)
    return model


def test_step_schedule_sets_the_rate_before_every_step():
    keras.utils.set_random_seed(0)
    model, probe = _tiny_model(), _Probe()
    x, y = np.zeros((40, 48, 48, 1), np.float32), np.zeros(40, int)
    sched = training.BudgetSchedule(0.1, total_steps=10, warmup=0.2)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[sched, probe], verbose=0)
    expected = [0.1 * training.warmup_linear_decay(s / 10, 0.2) for s in range(10)]
    np.testing.assert_allclose(probe.rates, expected, rtol=1e-5)
    assert sched.step == 10 and not sched.stopped


class _ProgressAtStepEnd(keras.callbacks.Callback):
    def __init__(self, schedule):
        super().__init__()
        self.schedule, self.seen = schedule, []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(self.schedule.progress())


def test_time_budget_stops_training_at_the_deadline():
    model = _tiny_model()
    x, y = np.zeros((16, 48, 48, 1), np.float32), np.zeros(16, int)
    sched = training.BudgetSchedule(0.1, budget_seconds=1.5)
    probe = _ProgressAtStepEnd(sched)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=8, epochs=10_000, callbacks=[sched, probe], verbose=0)
    # It stops at the deadline less the time it keeps for the epoch's end (measured at the first epoch's end: a
    # few ms here, more on a loaded machine), never before.
    assert sched.stopped and time.perf_counter() - start >= 1.5 - sched.expected_tail()
    assert sched.expected_tail() < 0.5
    # It stops at the first step that ends past the deadline, however fast or loaded the machine is.
    assert probe.seen[-1] >= 1.0 and all(p < 1.0 for p in probe.seen[:-1])
    assert len(history.history["loss"]) < 10_000


def test_the_budget_keeps_time_for_validation_and_test_before_any_is_measured(monkeypatch):
    sched = training.BudgetSchedule(0.1, budget_seconds=100, tail_factor=1.0, eval_steps=30)
    monkeypatch.setattr(sched, "seconds", lambda: 30.0)
    sched.step = 30  # 1 s a training step -> 30 validation steps at 1/3 s, and as long again for the test
    assert sched.expected_tail() == pytest.approx(20.0) and sched.progress() == pytest.approx(30 / 80)
    sched.tail = 4.0  # measured at the first epoch end: the measurement wins
    assert sched.expected_tail() == pytest.approx(8.0) and sched.progress() == pytest.approx(30 / 92)
    assert training.BudgetSchedule(0.1, budget_seconds=100).expected_tail() == 0.0  # no validation slice


def test_schedule_needs_exactly_one_clock():
    with pytest.raises(ValueError, match="exactly one"):
        training.BudgetSchedule(0.1)
    with pytest.raises(ValueError, match="exactly one"):
        training.BudgetSchedule(0.1, total_steps=5, budget_seconds=5)


# ------------------------------------------------------------------ precision
def test_bf16_detection_reads_cpu_flags():
    assert training.bf16_supported(ZEN4)
    assert not training.bf16_supported(AVX2_ONLY)
    assert not training.bf16_supported("")


def test_auto_precision_falls_back_to_float32_without_native_bf16(monkeypatch):
    monkeypatch.delenv("FER_KERAS_PRECISION", raising=False)
    monkeypatch.setattr(training, "bf16_supported", lambda cpuinfo=None: False)
    assert training.resolve_precision("auto") == "float32"
    assert training.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setenv("FER_KERAS_PRECISION", "mixed_bfloat16")
    assert training.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setenv("FER_KERAS_PRECISION", "fp8")
    with pytest.raises(ValueError, match="FER_KERAS_PRECISION"):
        training.resolve_precision("auto")
    with pytest.raises(ValueError, match="precision"):
        training.resolve_precision("half")


def test_auto_precision_keeps_the_models_measured_slower_in_bf16_in_float32(monkeypatch):
    """BF16_SLOWER is what results/train_throughput_paper_amx.json and _epyc.json measured: exactly the models whose
    training ran slower in mixed_bfloat16 than in float32, on the CPU with AMX and on the one with AVX512-BF16 alone
    (the same two lightResNets on both)."""
    from pathlib import Path

    monkeypatch.delenv("FER_KERAS_PRECISION", raising=False)
    monkeypatch.setattr(training, "bf16_supported", lambda cpuinfo=None: True)
    if keras.backend.backend() == "tensorflow":
        assert training.resolve_precision("auto", "resnet18") == "mixed_bfloat16"
    assert training.resolve_precision("auto", "lightresnet_l") == "float32"
    assert training.resolve_precision("mixed_bfloat16", "lightresnet_l") == "mixed_bfloat16"  # asked for: given
    for cpu in ("amx", "epyc"):
        bench = json.loads((Path(__file__).resolve().parents[1] / "results" / f"train_throughput_paper_{cpu}.json")
                           .read_text())
        rate = {(r["model"], r["precision"]): r["faces_per_s"] for s in bench["settings"] for r in s["runs"]}
        measured = {m for m, p in rate if p == "float32" and (m, "mixed_bfloat16") in rate}
        assert len(measured) >= 6 and training.BF16_SLOWER == {
            m for m in measured if rate[m, "mixed_bfloat16"] < rate[m, "float32"]}, cpu


def test_dtype_policy_context_restores_the_old_policy():
    before = keras.config.dtype_policy().name
    with training.dtype_policy("mixed_bfloat16"):
        model = models.build_speed_cnn(widths=(4, 8, 8), augment="none")
    assert keras.config.dtype_policy().name == before
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"  # logits stay float32 for the loss


# ------------------------------------------------------------------ CLI durations
@pytest.mark.parametrize("text, minutes", [("15m", 15), ("2h", 120), ("1h30m", 90), ("90s", 1.5), ("20", 20),
                                           ("0.5h", 30)])
def test_parse_duration(text, minutes):
    assert cli.parse_duration(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["", "abc", "15x", "-5", "0", "0m", "inf", "nan"])
def test_parse_duration_rejects_with_a_fix(text):
    with pytest.raises(argparse.ArgumentTypeError, match="15m"):
        cli.parse_duration(text)


# ------------------------------------------------------------------ resume
def test_face_batches_order_is_a_function_of_seed_and_epoch():
    x, y = np.arange(40 * 48 * 48, dtype=np.uint32).astype(np.uint8).reshape(40, 48, 48), np.arange(40) % 7
    straight = training.FaceBatches(x, y, 8, shuffle=True, crop=44, seed=3)
    resumed = training.FaceBatches(x, y, 8, shuffle=True, crop=44, seed=3, epoch=2)
    steps = straight.steps_per_epoch
    for k in (0, 1, steps - 1):  # batch k after the resume is batch 2 * steps + k of the straight run
        np.testing.assert_array_equal(straight[2 * steps + k][0], resumed[k][0])  # same faces, same crops
        np.testing.assert_array_equal(straight[2 * steps + k][1], resumed[k][1])
    assert not np.array_equal(straight[steps][1], resumed[0][1])  # epoch 1 is another order
    for _ in range(3):
        straight[0]  # Keras peeks at batches; reading one changes nothing
    np.testing.assert_array_equal(straight[2 * steps][0], resumed[0][0])


def test_mixed_batches_are_a_function_of_seed_epoch_and_batch_and_evaluation_is_not_mixed():
    x = np.arange(40 * 48 * 48, dtype=np.uint32).astype(np.uint8).reshape(40, 48, 48)
    y = np.eye(7, dtype=np.float32)[np.arange(40) % 7]
    for kind in ("mixup", "cutmix"):
        straight = training.FaceBatches(x, y, 8, shuffle=True, crop=44, seed=3, mix=kind)
        resumed = training.FaceBatches(x, y, 8, shuffle=True, crop=44, seed=3, epoch=2, mix=kind)
        steps = straight.steps_per_epoch
        for k in (0, steps - 1):  # the same faces, crops, partners and shares after a resume
            np.testing.assert_array_equal(straight[2 * steps + k][0], resumed[k][0])
            np.testing.assert_array_equal(straight[2 * steps + k][1], resumed[k][1])
        labels = np.concatenate([straight[k][1] for k in range(steps)])
        np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-6)
        assert (labels.max(1) < 1.0).any()  # mixed, not one-hot
        evaluated = training.FaceBatches(x, y, 8, crop=44, mix=kind)  # validation and test batches: never mixed
        np.testing.assert_array_equal(evaluated[0][1], y[:8])
    with pytest.raises(ValueError, match="one-hot"):
        training.FaceBatches(x, np.arange(40) % 7, 8, shuffle=True, mix="mixup")


RESUME_RUN = dict(model="small_cnn", source="sample", epochs=4, batch_size=35, learning_rate=3e-3,
                  lr_schedule="budget", augment="basic", seed=0, model_kwargs={"width": 4}, verbose=0,
                  precision="float32")


def _final_weights(out):
    from fer_keras import modelfile

    return modelfile.load_model(out / "model.keras").keras_model.get_weights()


@pytest.mark.parametrize("teachers", [None, "live", "precomputed"])
def test_two_epochs_then_resume_equals_four_straight(tmp_path, monkeypatch, teachers):
    """A plain run, and a distillation (a Distiller, live or precomputed teachers: its resume once raised 'loading
    weights into a model that has not yet been built')."""
    from fer_keras import modelfile

    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "state"))
    run = dict(RESUME_RUN)
    if teachers:
        teacher = models.build_model("small_cnn", width=8, augment="none", seed=1)
        path = modelfile.save_model(teacher, tmp_path / "t.keras", modelfile.make_metadata(teacher))
        run |= {"teachers": [str(path)], "precompute_teachers": teachers == "precomputed"}
    straight = experiment.train_and_evaluate(out_dir=tmp_path / "straight", **run)

    # The same run cut after two epochs by its time limit (TimeLimit stops when the next epoch would pass it)...
    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt  # as Ctrl-C, a Colab disconnect or the end of a session would

    original_fit = training.fit

    def interrupted_fit(*args, **kwargs):
        args = list(args)
        args[6] = list(args[6]) + [StopAfterTwo()]
        return original_fit(*args, **kwargs)

    monkeypatch.setattr(training, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        experiment.train_and_evaluate(out_dir=tmp_path / "cut", **run)
    monkeypatch.setattr(training, "fit", original_fit)
    state_dir = config.run_state_dir(tmp_path / "cut")
    cut = json.loads((state_dir / "state.json").read_text())
    assert cut["epochs_done"] == 2 and [s["epochs"] for s in cut["sessions"]] == [[0, 2]]
    assert cut["sessions"][0]["provenance"]["hardware"]["cpu_count"] >= 1
    if teachers == "live":  # a state written before sessions were kept: the earlier epochs' session is unknown
        del cut["sessions"]
        training.atomic_write_text(state_dir / "state.json", json.dumps(cut))
    assert not (tmp_path / "cut" / "model.keras").exists()

    # ...then resumed for the other two.
    resumed = experiment.resume_run(tmp_path / "cut")
    assert resumed["resumed_from_epoch"] == 2
    # which session trained which epochs, each with its own provenance; a straight run needs no list
    assert [s["epochs"] for s in resumed["sessions"]] == [[0, 2], [2, 4]] and "sessions" not in straight
    assert resumed["sessions"][1]["provenance"]["commit"] == resumed["provenance"]["commit"]
    assert (resumed["sessions"][0]["provenance"] is None) == (teachers == "live")
    assert len(resumed["history"]["loss"]) == len(straight["history"]["loss"]) == 4
    np.testing.assert_allclose(resumed["history"]["loss"], straight["history"]["loss"], rtol=1e-4)
    for a, b in zip(_final_weights(tmp_path / "cut"), _final_weights(tmp_path / "straight")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert resumed["test"]["accuracy"] == pytest.approx(straight["test"]["accuracy"])
    # A finished run is not resumed again, and says where its results are.
    with pytest.raises(ValueError, match="finished"):
        experiment.resume_run(tmp_path / "cut")


def test_resume_refuses_what_is_not_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "state"))
    with pytest.raises(ValueError, match="no run to resume"):
        experiment.resume_run(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="no unfinished checkpoint"):
        experiment.train_and_evaluate(out_dir=tmp_path / "fresh", resume=True, **RESUME_RUN)
    newer = tmp_path / "newer_state"  # a run started by a later version of the kit, with a setting this one lacks
    newer.mkdir()
    (newer / "run.json").write_text(json.dumps({"args": {"model": "tiny_cnn", "dropout_schedule": "linear"},
                                                "out_dir": str(tmp_path / "newer")}))
    with pytest.raises(ValueError, match="does not know \\(dropout_schedule\\)"):
        experiment.resume_run(newer)


def test_budget_run_records_budget_and_wall_time(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "state"))
    r = experiment.train_and_evaluate(out_dir=tmp_path / "b", **(RESUME_RUN | {"budget_minutes": 0.75}))
    assert r["config"]["budget_minutes"] == 0.75 and r["lr_schedule_used"] == "budget"
    assert r["stopped_by_budget"] and r["within_budget"]
    assert r["wall_seconds"] <= 45 and r["train_seconds"] < 45
    assert r["history"]["learning_rate"][-1] < 0.2 * RESUME_RUN["learning_rate"]  # decayed towards 0


def test_mixed_precision_run_saves_a_float32_model(tmp_path, monkeypatch):
    from fer_keras import modelfile

    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "state"))
    r = experiment.train_and_evaluate(out_dir=tmp_path / "bf16", **(RESUME_RUN | {"epochs": 1,
                                                                                 "precision": "mixed_bfloat16"}))
    assert r["precision_used"] == "mixed_bfloat16"
    net = modelfile.load_model(tmp_path / "bf16" / "model.keras").keras_model
    assert {layer.compute_dtype for layer in net.layers if layer.weights} == {"float32"}
    assert np.isfinite(r["test"]["accuracy"])


def test_run_state_lives_outside_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("FER_KERAS_RUNS", raising=False)
    d = config.run_state_dir(tmp_path / "runs" / "x")
    assert ".cache" in d.parts and d.name.startswith("x-")
    assert d != config.run_state_dir(tmp_path / "other" / "x")  # same name, other folder: another run


def test_speed_model_is_int8_friendly_and_counts():
    from fer_keras import flops

    net = models.build_model("speed_cnn")
    assert net.count_params() == 288_903 and flops.count_flops(net) == 43_058_944
    assert net.get_layer("last_conv") is net.layers[-3]
    assert all(not isinstance(layer, keras.layers.DepthwiseConv2D) for layer in net.layers)


def test_hard_labels():
    np.testing.assert_array_equal(data.hard_labels(np.array([2, 0])), [2, 0])
    np.testing.assert_array_equal(data.hard_labels(np.array([[0.1, 0.9], [0.8, 0.2]])), [1, 0])


def test_checkpoint_counts_training_seconds_across_sessions(tmp_path):
    """Without a budget schedule the checkpoint's clock carries the seconds of the sessions before a resume
    (the campaign gives a resumed run only the minutes it has left)."""
    cp = training.RunCheckpoint(tmp_path, seconds_before=100.0)
    cp.on_train_begin()
    cp.start -= 5.0  # five seconds of this session
    assert 105.0 <= cp.seconds() < 106.0


def test_session_log_adds_this_session_and_marks_unknown_earlier_ones():
    """One record of who ran what, for train --resume (epochs) and the CK+ folds (folds)."""
    me, before = {"commit": "b"}, [{"epochs": [0, 2], "provenance": {"commit": "a"}}]
    assert training.session_log(None, "epochs", 0, me, 3) == [{"epochs": [0, 3], "provenance": me}]
    assert training.session_log(before, "epochs", 2, me, 5) == before + [{"epochs": [2, 5], "provenance": me}]
    # a state from before sessions were kept: its units' session is unknown
    assert training.session_log(None, "folds", 4, me, 6) == [{"folds": [0, 4], "provenance": None},
                                                               {"folds": [4, 6], "provenance": me}]
    # a session that ran nothing (every fold already done) adds no entry
    assert training.session_log(before, "epochs", 2, me, 2) == before
    cp = training.RunCheckpoint("unused", provenance=me)
    cp.sessions, cp.first_epoch = before, 2
    assert cp.sessions_so_far(4) == before + [{"epochs": [2, 4], "provenance": me}]


def test_sigterm_on_a_real_run_exits_130_and_leaves_it_resumable(tmp_path, monkeypatch):
    """Fault injection on a real process: `train` killed with SIGTERM (a scheduler, `kill`, a session that ends)
    says how to continue, leaves no model behind, and the run resumes from its last finished epoch."""
    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "state"))
    out = tmp_path / "run"
    state = config.run_state_dir(out) / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "fer_keras", "train", "--epochs", "200", "--width", "4",
                             "--batch-size", "64", "--out", str(out)], env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]  # still training after its first epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"train --resume {out}" in err and not (out / "model.keras").exists()
    done = json.loads(state.read_text())["epochs_done"]
    assert done >= 1
    resumed = experiment.resume_run(out, time_limit_minutes=1e-4, verbose=0)  # one more epoch, then test
    assert resumed["resumed_from_epoch"] == done and resumed["epochs_run"] == done + 1
    assert (out / "model.keras").is_file()
