"""TFLite exports (int8 check, mixed precision), gated pruning, the PRJ loop and Hutchinson traces."""

import keras
import numpy as np
import pytest
from keras import layers, ops

from fer_keras import compress, data, flops, modelfile, models, pruning


@pytest.fixture(scope="module")
def sample():
    return data.load_sample()


@pytest.fixture(scope="module")
def small(sample):
    keras.utils.set_random_seed(0)
    m = models.build_model("small_cnn", width=8, augment="none")
    m.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def _logits(model, x):
    return keras.ops.convert_to_numpy(model(data.to_model_input(x), training=False))


# ------------------------------------------------------------------ pruning
def test_global_plan_drops_the_lowest_scores_and_keeps_a_minimum():
    scores = {"a": np.array([5.0, 0.1, 4.0, 3.0]), "b": np.array([0.2, 0.3, 9.0, 8.0, 7.0, 6.0])}
    plan = pruning.prune_plan(scores, 0.3, min_keep=3)  # 3 of 10: 0.1 (a), 0.2 and 0.3 (b)
    assert plan["a"].tolist() == [0, 2, 3] and plan["b"].tolist() == [2, 3, 4, 5]
    tight = pruning.prune_plan(scores, 0.5, min_keep=3)  # a cannot go below 3 -> b pays
    assert len(tight["a"]) == 3 and len(tight["b"]) == 3
    with pytest.raises(ValueError, match="fraction"):
        pruning.prune_plan(scores, 1.0)


@pytest.mark.parametrize("name", ["small_cnn", "baseline_cnn"])
def test_pruned_model_has_the_planned_channels_and_equals_the_masked_original(name, sample):
    kw = {"width": 8} if name == "small_cnn" else {}
    keras.utils.set_random_seed(1)
    model = models.build_model(name, augment="none", **kw)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = sample["Training"]
    scores = pruning.taylor_scores(model, train.x[:32], train.y[:32])
    assert set(scores) == set(pruning.gated_layers(model)) and all((s >= 0).all() for s in scores.values())
    plan = pruning.prune_plan(scores, 0.3)
    thin = pruning.prune(model, plan)
    counts = pruning.channel_counts(thin)
    for bn, conv in pruning.gated_layers(model).items():
        assert counts[conv] == len(plan[bn])
    np.testing.assert_allclose(_logits(thin, train.x[:6]), _logits(pruning.masked_copy(model, plan), train.x[:6]),
                               atol=1e-4)
    assert models.trainable_params(thin) < models.trainable_params(model)
    assert flops.count_flops(thin) < flops.count_flops(model)


def test_pruned_tflite_file_is_smaller(tmp_path, small, sample):
    plan = pruning.prune_plan(pruning.taylor_scores(small, sample["Training"].x[:32], sample["Training"].y[:32]), 0.5)
    sizes = {}
    for tag, model in (("full", small), ("thin", pruning.prune(small, plan))):
        path = modelfile.save_model(model, tmp_path / f"{tag}.keras", modelfile.make_metadata(model))
        sizes[tag] = compress.export_tflite(path, tmp_path / f"{tag}.tflite", "int8", calibration_size=16).stat().st_size
    assert sizes["thin"] < 0.8 * sizes["full"]


def test_pruning_refuses_residual_models():
    with pytest.raises(pruning.PruningError, match="joins branches"):
        pruning.prune(models.build_model("residual_cnn"), {})


def test_punish_reward_judge_stops_at_the_threshold(small, sample):
    train, judge = sample["Training"], sample["PublicTest"]
    kept, history = pruning.punish_reward_judge(small, train, judge, step_fraction=0.2, max_drop=-1.0,
                                                punish_faces=5, max_steps=3)
    assert kept is small  # the first step cannot beat a negative threshold: nothing accepted
    assert list(history["accepted"]) == [True, False]
    kept, history = pruning.punish_reward_judge(small, train, judge, step_fraction=0.2, max_drop=1.0,
                                                punish_faces=5, max_steps=2)
    assert list(history.index) == [0, 1, 2] and history["accepted"].all()
    assert history["gated channels"].is_monotonic_decreasing and history.loc[2, "params"] < history.loc[0, "params"]


# ------------------------------------------------------------------ Hessian
def test_hutchinson_trace_matches_the_exact_hessian_trace():
    import tensorflow as tf

    keras.utils.set_random_seed(2)
    inp = keras.Input((3,))
    model = keras.Model(inp, layers.Dense(4, name="head")(layers.Dense(5, activation="tanh", name="hidden")(inp)))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.integers(0, 4, 16)
    traces = pruning.hessian_traces(model, x, y, probes=300, batch_size=16, distribution="rademacher")
    for name in ("hidden", "head"):
        w = model.get_layer(name).kernel.value
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = model.loss(y, model(x))
            g = tf.reshape(inner.gradient(loss, w), [-1])
        exact = float(tf.linalg.trace(tf.reshape(outer.jacobian(g, w), (g.shape[0], g.shape[0]))))
        assert traces[name]["trace"] == pytest.approx(exact, rel=0.15, abs=0.02), name
        assert traces[name]["channel_traces"].sum() == pytest.approx(traces[name]["trace"], rel=1e-6)


# ------------------------------------------------------------------ export checks, mixed precision
@pytest.fixture(scope="module")
def saved_small(tmp_path_factory, small):
    folder = tmp_path_factory.mktemp("small")
    return modelfile.save_model(small, folder / "small.keras", modelfile.make_metadata(small))


def test_int8_export_names_a_layer_without_an_int8_kernel(tmp_path):
    @keras.saving.register_keras_serializable(package="tests")
    class Wavy(layers.Layer):
        def call(self, x):
            return ops.sin(x)

    inp = keras.Input((48, 48, 1))
    x = layers.Conv2D(4, 3, name="conv_a")(layers.Rescaling(1 / 255)(inp))
    x = layers.GlobalAveragePooling2D()(Wavy(name="wavy_gate")(x))
    model = keras.Model(inp, layers.Dense(7, name="logits")(x))
    path = modelfile.save_model(model, tmp_path / "wavy.keras", modelfile.make_metadata(model))
    with pytest.raises(compress.CompressError, match="wavy_gate"):
        compress.export_tflite(path, tmp_path / "wavy.tflite", "int8", calibration_size=8)
    out = compress.export_tflite(path, tmp_path / "wavy.tflite", "int8", calibration_size=8, strict=False)
    assert modelfile.read_metadata(out)["float_ops"] >= 1


def test_mixed_precision_keeps_the_chosen_layer_in_float(tmp_path, saved_small, sample):
    mixed = compress.export_mixed(saved_small, tmp_path / "mixed.tflite", ["stage1a_conv"], calibration_size=16)
    flatbuffer = mixed.read_bytes()
    model = modelfile.load_model(saved_small).keras_model
    left = compress.float_ops(flatbuffer, model)
    assert {f["layer"] for f in left} == {"stage1a_conv"}
    assert modelfile.read_metadata(mixed)["float_layers"] == ["stage1a_conv"]
    probs = modelfile.load_model(mixed).predict(data.to_model_input(sample["PublicTest"].x[:4]))
    assert probs.shape == (4, 7) and np.isfinite(probs).all()
    with pytest.raises(ValueError, match="no layer named"):
        compress.export_mixed(saved_small, tmp_path / "x.tflite", ["nope"])


def test_compare_exports_table(tmp_path, saved_small, sample):
    table = compress.compare_exports(saved_small, tmp_path, sample["PublicTest"], sample["Training"].x,
                                     calibration_size=16, latency_runs=5)
    assert list(table.index) == ["keras", "tflite float32", "tflite dynamic", "tflite float16", "tflite int8"]
    assert table.loc["keras", "Δ acc vs keras (pt)"] == 0
    assert abs(table.loc["tflite float32", "accuracy"] - table.loc["keras", "accuracy"]) < 0.01
    assert table.loc["tflite int8", "size (KB)"] < table.loc["tflite float32", "size (KB)"]
    assert ((table["ms/face"] > 0) & (table["ms/face"] < 100)).all()  # an 8-wide CNN: well under 100 ms a face


def test_int8_report_matches_the_compare_table(tmp_path, saved_small, sample):
    test = sample["PublicTest"]
    rec = compress.int8_report(saved_small, tmp_path / "r.tflite", sample["Training"].x, test, calibration_size=16,
                               runs=5)
    assert rec["file"] == "r.tflite" and rec["test_n"] == len(test.y) == 350
    assert rec["kb"] == pytest.approx((tmp_path / "r.tflite").stat().st_size / 1024)
    direct = modelfile.load_model(tmp_path / "r.tflite").predict(data.to_model_input(test.x)).argmax(1)
    assert rec["accuracy"] == pytest.approx(float(np.mean(direct == test.y)))
    assert rec["latency_single_thread"]["runs"] == 5 and rec["latency_single_thread"]["median_ms"] > 0


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_kit_model_converts_to_full_int8(tmp_path, name):
    small = {} if name in ("baseline_cnn", "residual_cnn", "cbam_cnn", "gap_cnn") else {"width": 8}
    model = models.build_model(name, **small)
    path = modelfile.save_model(model, tmp_path / "m.keras", modelfile.make_metadata(model))
    out = compress.export_tflite(path, tmp_path / "m.tflite", "int8", calibration_size=4)
    assert modelfile.read_metadata(out)["float_ops"] == 0
