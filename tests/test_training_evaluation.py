import json
import zipfile

import keras
import numpy as np
import pytest

from fer_keras import compress, data, evaluation, modelfile, models, training
from fer_keras.modelfile import ModelFileError


@pytest.fixture(scope="module")
def tiny_split():
    s = data.load_sample(["Training"])["Training"]
    idx = data.stratified_indices(s.y, 6, seed=0)
    return data.Split(s.x[idx], s.y[idx], s.rows[idx])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_split):
    keras.utils.set_random_seed(0)
    model = models.build_small_cnn(width=8, augment="none")
    training.compile_model(model, 1e-3)
    training.fit(model, tiny_split, None, epochs=1, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("m") / "tiny.keras"
    modelfile.save_model(model, path, modelfile.make_metadata(model, "fer2013", model="small_cnn"))
    return path


# ------------------------------------------------------------------ training
def test_face_batches_shapes_crops_and_weights(tiny_split):
    weights = data.class_weights(tiny_split.y)
    batches = training.FaceBatches(tiny_split.x, tiny_split.y, batch_size=10, shuffle=True, crop=44,
                                   class_weight=weights)
    assert len(batches) == 5
    x, y, w = batches[0]
    assert x.shape == (10, 44, 44, 1) and x.dtype == np.float32 and x.max() <= 255
    np.testing.assert_allclose(w, [weights[int(c)] for c in y])
    assert batches.num_batches is None  # an endless stream; fit gets steps_per_epoch
    assert sorted(batches.order(0)) == list(range(len(tiny_split.y)))
    assert not np.array_equal(batches.order(0), batches.order(1))
    np.testing.assert_array_equal(batches[5][1], tiny_split.y[batches.order(1)[:10]])  # batch 5 = epoch 1, batch 0
    (x_only,) = training.FaceBatches(tiny_split.x, None, batch_size=4)[0]
    np.testing.assert_array_equal(x_only[..., 0], tiny_split.x[:4])


def test_fit_reduces_loss_and_logs_learning_rate(tiny_split):
    keras.utils.set_random_seed(0)
    model = models.build_small_cnn(width=8, augment="none")
    training.compile_model(model, 3e-3)
    cbs = training.make_callbacks(reduce_lr_patience=1, early_stopping_patience=3)
    history = training.fit(model, tiny_split, tiny_split, epochs=6, batch_size=14, callbacks=cbs, verbose=0)
    h = history.history
    assert h["loss"][-1] < h["loss"][0]
    assert "learning_rate" in h and len(h["learning_rate"]) == len(h["loss"])


def test_checkpoint_and_early_stopping_choose_the_best_epoch_by_one_monitor(tmp_path):
    cbs = training.make_callbacks(tmp_path / "best.weights.h5", reduce_lr_patience=5, early_stopping_patience=15)
    kinds = {type(cb).__name__: cb for cb in cbs}
    assert kinds["ModelCheckpoint"].monitor == kinds["EarlyStopping"].monitor == "val_accuracy"
    assert kinds["EarlyStopping"].restore_best_weights and kinds["ReduceLROnPlateau"].monitor == "val_loss"


def test_soft_labels_compile_and_fit(tiny_split):
    soft = np.eye(7, dtype=np.float32)[tiny_split.y] * 0.8 + 0.2 / 7
    model = models.build_small_cnn(width=8, augment="none")
    training.compile_model(model, soft_labels=True)
    history = training.fit(model, data.Split(tiny_split.x, soft, tiny_split.rows), None, epochs=1, verbose=0)
    target_entropy = float(-(soft * np.log(soft)).sum(axis=1).mean())  # cross-entropy can never be below it
    assert target_entropy < history.history["loss"][0] < 10
    with pytest.raises(ValueError, match="optimizer"):
        training.compile_model(model, optimizer="rmsprop")


# ------------------------------------------------------------------ metrics
def test_metrics_match_sklearn_definitions():
    y = np.array([0, 0, 1, 2, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 2, 2, 0]].astype(np.float32)
    m = evaluation.classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m["per_class"]["c"]["recall"] == pytest.approx(2 / 3)
    f1 = [0.5, 2 / 3, 0.8]  # a: P=R=1/2; b: P=1/2, R=1; c: P=1, R=2/3
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_binary_accuracy_overstates():
    y = np.arange(7).repeat(10)
    silent = np.zeros((70, 7), np.float32)
    assert evaluation.binary_accuracy(y, silent) == pytest.approx(6 / 7)
    assert evaluation.classification_metrics(y, silent + 1 / 7, list("abcdefg"))["accuracy"] == pytest.approx(1 / 7)


def test_predict_proba_tta():
    seen = []

    def fake(x):
        seen.append(x.shape)
        return np.tile(x.mean(axis=(1, 2, 3))[:, None], (1, 3)) * np.array([1.0, 0.0, 0.0])

    x = np.random.default_rng(0).integers(0, 255, (5, 48, 48), np.uint8)
    p = evaluation.predict_proba(fake, x, 44, "ten_crop")
    assert p.shape == (5, 3) and np.allclose(p.sum(axis=1), 1) and len(seen) == 10 and seen[0] == (5, 44, 44, 1)
    seen.clear()
    evaluation.predict_proba(fake, x, 48, "flip")
    assert len(seen) == 2
    with pytest.raises(ValueError, match="expects 40x40"):
        evaluation.predict_proba(fake, np.zeros((1, 36, 36), np.uint8), 40)


# ------------------------------------------------------------------ model files
def test_keras_roundtrip_carries_record(saved_model):
    loaded = modelfile.load_model(saved_model)
    assert loaded.metadata["class_names"][0] == "angry" and loaded.metadata["input_size"] == [48, 48]
    assert loaded.predict(np.zeros((2, 48, 48, 1), np.float32)).shape == (2, 7)


def test_bad_model_files(tmp_path, saved_model):
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(saved_model.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        modelfile.load_model(truncated)
    foreign = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(ModelFileError, match="without the fer_keras record"):
        modelfile.load_model(foreign)
    h5 = tmp_path / "fer.h5"
    h5.write_bytes(b"\x89HDF")
    with pytest.raises(ModelFileError, match="JSON \\+ H5"):
        modelfile.load_model(h5)
    with pytest.raises(ModelFileError, match="not found"):
        modelfile.load_model(tmp_path / "missing.keras")
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("config.json", "{not json")
        zf.writestr(modelfile.META_NAME, json.dumps({"class_names": ["a", "b"], "input_size": [48, 48]}))
    with pytest.raises(ModelFileError, match="Keras could not load it"):
        modelfile.load_model(broken)
    tfl = tmp_path / "junk.tflite"
    tfl.write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="without the fer_keras record"):
        modelfile.load_model(tfl)


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_tflite_export_and_evaluate_contract(tmp_path, saved_model, mode):
    out = compress.export_tflite(saved_model, tmp_path / f"m_{mode}.tflite", mode, calibration_size=20)
    assert modelfile.read_metadata(out)["tflite_mode"] == mode
    keras_metrics = evaluation.evaluate_file(saved_model, "sample", "PublicTest")
    lite_metrics = evaluation.evaluate_file(out, "sample", "PublicTest")
    for m in (keras_metrics, lite_metrics):
        assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n", "ten_crop"} <= set(m)
        assert m["n"] == 350 and m["ten_crop"] is False
    if mode == "float32":
        assert lite_metrics["accuracy"] == pytest.approx(keras_metrics["accuracy"], abs=1 / 350)


def test_time_limit_stops_training(tiny_split):
    model = models.build_small_cnn(width=4, augment="none")
    training.compile_model(model)
    timer = training.TimeLimit(0.0)
    history = training.fit(model, tiny_split, None, epochs=5, batch_size=21, callbacks=[timer], verbose=0)
    assert timer.stopped and len(history.history["loss"]) == 1


def test_latency_race_takes_turns_and_ranks_a_slow_model_last():
    import time

    calls = []

    def fast(x):
        calls.append("fast")

    def slow(x):
        calls.append("slow")
        time.sleep(0.002)

    race = evaluation.latency_race({"fast": (fast, 48, 1), "slow": (slow, 64, 1)}, rounds=3, runs=4, warmup=1)
    assert calls[2:] == (["fast"] * 4 + ["slow"] * 4) * 3  # after one warm-up call each, turns by round
    assert race["slow"]["median_ms"] >= 2.0 > race["fast"]["median_ms"]
    assert race["fast"]["runs"] == 12 and race["fast"]["rounds"] == 3


def test_paired_test_is_mcnemar_on_the_discordant_faces():
    from scipy.stats import binomtest

    y = np.zeros(100, int)
    a = np.r_[np.zeros(60, int), np.ones(40, int)]            # 60 right
    b = np.r_[np.zeros(50, int), np.ones(10, int), np.zeros(20, int), np.ones(20, int)]  # 70 right
    r = evaluation.paired_test(y, a, b)
    assert (r["only_a_right"], r["only_b_right"]) == (10, 20)
    assert r["delta_pt"] == pytest.approx(10.0) and r["n"] == 100
    assert r["p_value"] == pytest.approx(binomtest(10, 30, 0.5).pvalue)
    assert evaluation.paired_test(y, a, a)["p_value"] == 1.0


def test_save_model_is_atomic(saved_model, tmp_path, monkeypatch):
    """A crash in the middle of a save leaves the old file as it was, and no half-written model beside it."""
    loaded = modelfile.load_model(saved_model)
    path = tmp_path / "m.keras"
    modelfile.save_model(loaded.keras_model, path, loaded.metadata)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(modelfile.zipfile, "ZipFile", crash)
    with pytest.raises(OSError, match="disk full"):
        modelfile.save_model(loaded.keras_model, path, loaded.metadata)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_dead_units_finds_the_relu_units_that_never_fire():
    """A Dense ReLU layer whose bias is pushed far below zero for half its units: exactly those are dead."""
    inp = keras.Input((48, 48, 1))
    h = keras.layers.Dense(8, activation="relu", name="fc1")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inp)))
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    fc1 = model.get_layer("fc1")
    fc1.bias.assign(np.array([-1e3] * 4 + [1e3] * 4, np.float32))
    faces = np.random.default_rng(0).integers(0, 256, (20, 48, 48)).astype(np.uint8)
    report = evaluation.dead_units(model, faces)
    assert list(report) == ["fc1"]  # the linear logits layer is not a ReLU layer
    assert report["fc1"]["units"] == 8 and report["fc1"]["dead"] == 4 and report["fc1"]["fraction"] == 0.5
    assert report["fc1"]["fan_in"] == 48 * 48 and report["fc1"]["faces"] == 20
    fc1.bias.assign(np.full(8, 1e3, np.float32))
    assert evaluation.dead_units(model, faces)["fc1"]["dead"] == 0


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_trains_as_keras_does_and_saves_keras_own_layer(tmp_path, policy):
    """training.fuse_batch_norm: the same outputs, gradients and moving statistics as Keras's BatchNormalization
    in training, the same inference, and a saved file that loads without it."""
    if keras.backend.backend() != "tensorflow":
        assert training.fuse_batch_norm(models.build_model("speed_cnn", width=8)) == 0
        return
    import tensorflow as tf

    def build():
        keras.utils.set_random_seed(0)
        with training.dtype_policy(policy):
            return models.build_model("speed_cnn", width=8, augment="none", seed=0)

    plain, fused = build(), build()
    bns = [layer for layer in fused.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert training.fuse_batch_norm(fused) == len(bns) == 6  # the stem and five conv layers
    x = np.random.default_rng(1).uniform(0, 255, (16, 48, 48, 1)).astype("float32")
    seen = []
    for net in (plain, fused):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(net(x, training=True)))
        grads = tape.gradient(loss, net.trainable_variables)
        stats = [v.numpy() for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)
                 for v in (layer.moving_mean, layer.moving_variance)]
        seen.append((loss.numpy(), [g.numpy() for g in grads], stats, net(x, training=False).numpy()))
    tol = 1e-4 if policy == "float32" else 3e-2  # bf16 convolutions round differently once inputs differ
    assert np.isclose(seen[0][0], seen[1][0], rtol=tol)
    for g0, g1 in zip(seen[0][1], seen[1][1]):
        assert np.abs(g0 - g1).max() <= tol * max(np.abs(g0).max(), 1.0)
    for s0, s1 in zip(seen[0][2], seen[1][2]):
        np.testing.assert_allclose(s0, s1, rtol=tol, atol=1e-5)
    np.testing.assert_allclose(seen[0][3], seen[1][3], rtol=tol, atol=tol)
    fused.save(tmp_path / "fused.keras")
    with zipfile.ZipFile(tmp_path / "fused.keras") as z:
        assert '"class_name": "BatchNormalization"' in z.read("config.json").decode()
    again = keras.saving.load_model(tmp_path / "fused.keras")
    np.testing.assert_allclose(again(x, training=False).numpy(), seen[1][3], rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_leaves_layers_it_cannot_take_to_keras():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused kernel is TensorFlow's")
    inputs = keras.Input((5,))
    renorm = keras.layers.BatchNormalization(renorm=True)
    net = keras.Model(inputs, keras.layers.BatchNormalization()(renorm(inputs)))
    assert training.fuse_batch_norm(net) == 1 and "call" not in vars(renorm)
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    assert net(x, training=True).shape == (8, 5)  # 2-D input: the fused layer falls back to Keras's call
    ca = models.build_model("ca_resnet", width=8, augment="none")  # a BatchNormalization inside a custom layer
    inner = [layer for layer in ca._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(inner) > sum(isinstance(layer, keras.layers.BatchNormalization) for layer in ca.layers)
    assert training.fuse_batch_norm(ca) == len(inner)
