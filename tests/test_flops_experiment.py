import json

import keras
import numpy as np
import pytest
from keras import layers

from fer_keras import config, experiment, flops, models
from fer_keras.layers import CBAM
from fer_keras.recipes import RunConfig


def test_layer_macs_by_hand():
    inp = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 3, padding="same")(inp)                 # 4*4*3 * 3*3*2 = 864
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid")(x)  # 2*2 * 3*2 * 9 = 216
    x = layers.SeparableConv2D(4, 1)(x)                          # 2*2 * 6*1 * (1 + 4) = 120
    x = CBAM(reduction=2)(x)                                     # 2*2*4*2 + 2*2*2*49 = 32 + 392
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(5)(x)                                     # 4*5 = 20
    model = keras.Model(inp, out)
    assert flops.count_macs(model) == 864 + 216 + 120 + 32 + 392 + 20
    assert flops.count_flops(model) == 2 * flops.count_macs(model)
    assert flops.count_flops(model, "mac") == flops.count_macs(model)
    with pytest.raises(ValueError):
        flops.count_flops(model, "gmacs")


def test_baseline_flops_and_nested_augmentation_ignored():
    plain = models.build_s004_baseline()
    augmented = models.build_s004_baseline(augment="strong")
    assert flops.count_macs(plain) == flops.count_macs(augmented)
    # first conv: 46*46*64*9 MACs
    assert flops.layer_macs(plain.get_layer("s1a_conv")) == 46 * 46 * 64 * 9


def test_step_config_smoke_and_full():
    full = experiment.step_config("07_augmentation", "full")
    assert full["source"] == "fer2013" and full["epochs"] == 100 and full["augment"] == "strong"
    assert full["learning_rate"] == 1e-4 and full["early_stopping_patience"] == 15
    smoke = experiment.step_config("01_baseline", "smoke")
    assert smoke["source"] == "sample" and smoke["epochs"] == 1 and smoke["model"] == "baseline_cnn"
    with pytest.raises(ValueError, match="unknown step"):
        experiment.step_config("08_vgg")


def test_run_step_reuses_matching_run(tmp_path, monkeypatch):
    calls = []

    def fake_train(out_dir, **kwargs):
        calls.append(kwargs)
        results = {"model": kwargs["model"], "data": {"source": kwargs["source"], "label_mode": "fer2013",
                                                       "test_split": "PublicTest"},
                   "config": RunConfig(**kwargs).record()}  # what train_and_evaluate records
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results))
        return results

    monkeypatch.setattr(experiment, "train_and_evaluate", fake_train)
    experiment.run_step("05_class_weights", "smoke", runs_dir=tmp_path)
    experiment.run_step("05_class_weights", "smoke", runs_dir=tmp_path)
    assert len(calls) == 1
    experiment.run_step("05_class_weights", "smoke", runs_dir=tmp_path, epochs=2)
    assert len(calls) == 2


def test_compare_table_columns():
    run = {"params": 10, "flops": 2e6, "seconds_per_epoch": 1.5, "epochs_run": 3,
           "test": {"accuracy": 0.5, "macro_f1": 0.4,
                    "per_class": {"angry": {"recall": 0.25}, "happy": {"recall": 0.75}}}}
    table = experiment.compare({"a": run, "b": run})
    assert list(table.index) == ["a", "b"]
    assert {"params", "MFLOPs", "accuracy", "macro-F1", "recall angry"} <= set(table.columns)
    assert table.loc["a", "MFLOPs"] == 2.0


def test_ckplus_cv_schemes_on_the_sample():
    subject = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1)
    leaky = experiment.ckplus_cv("leaky", k=3, source="sample", epochs=1)
    assert subject["leaked_test_rows"] == [0, 0, 0] and sum(leaky["leaked_test_rows"]) > 0
    assert len(subject["fold_accuracy"]) == 3 and 0 <= subject["mean_accuracy"] <= 1
    assert sum(subject["test_sizes"]) == subject["data"]["faces"]
    with pytest.raises(ValueError, match="scheme"):
        experiment.ckplus_cv("random", source="sample")


def test_ckplus_cv_fine_tunes_a_saved_model_and_its_fresh_twin(tmp_path):
    from fer_keras import modelfile

    net = models.build_model("tiny_cnn", width=4)
    path = modelfile.save_model(net, tmp_path / "fer.keras", modelfile.make_metadata(net, "fer2013", model="tiny_cnn"))
    tuned = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, init_from=path)
    fresh = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, init_from=path, fresh=True)
    assert tuned["model"] == "tiny_cnn" and tuned["start_from"]["weights"].startswith("fine-tuned")
    assert tuned["start_from"]["sha256"] == fresh["start_from"]["sha256"] and len(tuned["start_from"]["sha256"]) == 64
    assert fresh["start_from"]["weights"].startswith("re-initialised")
    assert len(tuned["fold_accuracy"]) == 3 and tuned["test_sizes"] == fresh["test_sizes"]


def test_an_interrupted_ckplus_cv_goes_on_at_the_next_fold(tmp_path, monkeypatch):
    state = tmp_path / "subject.json"
    straight = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, model="tiny_cnn",
                                    model_kwargs={"width": 4})
    real_fit, fits = experiment.training.fit, []

    def fit_then_stop(*args, **kwargs):  # the session ends during the second fold
        if len(fits) == 1:
            raise KeyboardInterrupt
        fits.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(experiment.training, "fit", fit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, model="tiny_cnn", model_kwargs={"width": 4},
                             state_file=state)
    assert len(json.loads(state.read_text())["fold_accuracy"]) == 1
    monkeypatch.setattr(experiment.training, "fit", real_fit)
    resumed = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, model="tiny_cnn",
                                   model_kwargs={"width": 4}, state_file=state)
    assert resumed["resumed_at_fold"] == 1 and straight["resumed_at_fold"] is None
    np.testing.assert_allclose(resumed["fold_accuracy"], straight["fold_accuracy"], atol=1e-6)
    # the record names which session ran which folds, each with its own provenance; a straight run needs no list
    assert [s["folds"] for s in resumed["sessions"]] == [[0, 1], [1, 3]] and "sessions" not in straight
    assert resumed["sessions"][0]["provenance"]["commit"] == resumed["provenance"]["commit"]
    assert resumed["sessions"][1]["provenance"] == resumed["provenance"]
    # a run whose folds were all finished before it started ran none of them: its sessions say so
    again = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, model="tiny_cnn",
                                 model_kwargs={"width": 4}, state_file=state)
    assert [s["folds"] for s in again["sessions"]] == [[0, 1], [1, 3]] and again["resumed_at_fold"] == 3
    # a state from before sessions were kept: its folds' session is unknown, and the record says so
    legacy = json.loads(state.read_text())
    del legacy["sessions"]
    state.write_text(json.dumps(legacy))
    old = experiment.ckplus_cv("subject", k=3, source="sample", epochs=1, model="tiny_cnn",
                               model_kwargs={"width": 4}, state_file=state)
    assert old["sessions"] == [{"folds": [0, 3], "provenance": None}]
    other = experiment.ckplus_cv("subject", k=3, source="sample", epochs=2, model="tiny_cnn",
                                 model_kwargs={"width": 4}, state_file=state)  # another recipe: starts over
    assert other["resumed_at_fold"] is None


def test_cross_label_metrics_match_by_class_name(tmp_path):
    from fer_keras import data, evaluation, modelfile

    class Always:  # predicts one class for every face
        def __init__(self, c):
            self.c = c

        def __call__(self, x):
            logits = np.zeros((len(x), 7), np.float32)
            logits[:, self.c] = 5
            return logits

    meta = {"class_names": list(config.FER2013_CLASSES), "input_size": [48, 48]}
    test = data.load_dataset("sample", "ferplus8", usages=["PublicTest"])["PublicTest"]
    names8 = config.LABEL_SETS["ferplus8"]
    happy = modelfile.LoadedModel(None, meta, Always(config.FER2013_CLASSES.index("happy")))
    m = evaluation.cross_label_metrics(happy, test, "ferplus8")
    assert m["accuracy"] == pytest.approx(np.mean(test.y == names8.index("happy")))
    assert m["recall"]["happy"] == 1.0 and m["recall"]["contempt"] == 0.0


def test_a_whitened_run_trains_with_its_stem_set_from_the_faces_and_kept(tmp_path):
    from fer_keras import modelfile

    r = experiment.train_and_evaluate("speed_cnn", "sample", epochs=1, batch_size=64, out_dir=tmp_path / "w",
                                      model_kwargs={"whiten": True}, verbose=0)
    kernel = keras.ops.convert_to_numpy(modelfile.load_model(tmp_path / "w" / "model.keras").keras_model
                                        .get_layer("stem_conv").kernel)
    np.testing.assert_allclose(kernel[..., 16:], -kernel[..., :16])  # the whitening pairs, untouched by training
    assert r["config"]["model_kwargs"] == {"whiten": True} and r["trainable_params"] < r["params"]


def test_a_run_with_erasing_and_dropout_trains_in_bf16_and_its_file_loads(tmp_path):
    """The long run's regularisers (random erasing inside the model, dropout before the logits) train under
    mixed_bfloat16 (the default on a CPU with native bf16) and survive the saved `.keras` file."""
    from fer_keras import modelfile

    r = experiment.train_and_evaluate("speed_cnn", "sample", epochs=1, batch_size=64, out_dir=tmp_path / "e",
                                      augment="basic+erase", model_kwargs={"dropout": 0.3}, precision="mixed_bfloat16",
                                      verbose=0)
    net = modelfile.load_model(tmp_path / "e" / "model.keras").keras_model
    assert net.get_layer("augment").get_layer("erase").factor == (0.5, 0.5)
    assert net.get_layer("dropout").rate == 0.3
    assert r["config"]["augment"] == "basic+erase" and r["precision_used"] == "mixed_bfloat16"
    assert 0 <= r["test"]["accuracy"] <= 1 and r["epochs_run"] == 1


def test_an_ensembles_cost_adds_its_members_runs_and_its_evaluation(tmp_path):
    for name, wall in (("a", 600.0), ("b", 1200.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"wall_seconds": wall}))
    cost = experiment.members_minutes([tmp_path / "a.keras", tmp_path / "b.keras"], 30.0)
    assert cost["member_run_minutes"] == {str(tmp_path / "a.keras"): 10.0, str(tmp_path / "b.keras"): 20.0}
    assert cost["total_minutes"] == 30.5 and cost["evaluation_seconds"] == 30.0
    assert experiment.members_minutes([tmp_path / "a.keras", tmp_path / "c.keras"], 30.0)["total_minutes"] is None
