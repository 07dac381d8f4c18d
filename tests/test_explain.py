"""Saliency maps, the weight-randomisation sanity check, robustness and attention-by-region tables."""

import keras
import numpy as np
import pytest

from fer_keras import explain, models


def _quadrant_model():
    """A model that reads only the top-left quadrant: logit 0 = w * mean brightness there, logit 1 = 0."""
    inp = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(x)
    x = keras.layers.ReLU(name="last_conv")(x)
    out = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    model.get_layer("conv").set_weights([np.ones((1, 1, 1, 1), "float32")])
    w = np.zeros((48, 48, 2), "float32")
    w[:24, :24, 0] = 8.0 / (24 * 24)
    model.get_layer("logits").set_weights([w.reshape(-1, 2), np.array([0.0, 4.0], "float32")])
    return model


def _bright_faces(n=2):
    x = np.zeros((n, 48, 48, 1), "float32")
    x[:, :24, :24] = 255.0
    return x


def _quadrant_share(maps):
    return maps[:, :24, :24].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


@pytest.mark.parametrize("method", ["occlusion", "meaningful_perturbation"])
def test_perturbation_maps_find_the_region_the_model_reads(method):
    kwargs = {"iterations": 150, "perturbation": "constant", "jitter": 0} if method == "meaningful_perturbation" else {}
    maps = explain.saliency(method, _quadrant_model(), _bright_faces(), 0, **kwargs)
    assert maps.shape == (2, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    top_left, bottom_right = maps[:, :24, :24].mean(axis=(1, 2)), maps[:, 24:, 24:].mean(axis=(1, 2))
    assert (top_left > 0.9).all() and (bottom_right < 0.15).all(), (top_left, bottom_right)
    assert (_quadrant_share(maps) > 0.45).all()


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    return models.build_model("small_cnn", augment="none", width=8)


@pytest.mark.parametrize("method", ["grad_cam", "score_cam"])
def test_cam_maps_shape_range_and_they_depend_on_the_weights(method, small_model):
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32")
    maps = explain.saliency(method, small_model, x, [0, 1, 2])
    assert maps.shape == (3, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    again = explain.saliency(method, small_model, x, [0, 1, 2])
    np.testing.assert_allclose(again, maps, atol=1e-5)  # deterministic
    # Adebayo et al.: randomise the weights -> the maps must change
    random_maps = explain.saliency(method, explain.randomized_copy(small_model, "all"), x, [0, 1, 2])
    assert explain.rank_correlation(maps, random_maps) < 0.9
    assert np.abs(maps - random_maps).mean() > 0.05


def test_randomized_copy_top_keeps_the_features(small_model):
    top = explain.randomized_copy(small_model, "top")
    for a, b in zip(small_model.get_layer("last_conv").weights, top.get_layer("last_conv").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(small_model.get_layer("logits").get_weights()[0], top.get_layer("logits").get_weights()[0])
    with pytest.raises(ValueError, match="which"):
        explain.randomized_copy(small_model, "middle")


def test_bad_inputs_get_clear_errors(small_model):
    with pytest.raises(ValueError, match="expects"):
        explain.grad_cam(small_model, np.zeros((1, 40, 40, 1), "float32"), 0)
    with pytest.raises(ValueError, match="method"):
        explain.saliency("lime", small_model, np.zeros((1, 48, 48, 1), "float32"), 0)
    with pytest.raises(ValueError, match="perturbation"):
        explain.meaningful_perturbation(small_model, np.zeros((1, 48, 48, 1), "float32"), 0, perturbation="noise")


def test_robustness_table_over_a_split():
    model = _quadrant_model()
    x = _bright_faces(4)[..., 0]
    y = np.zeros(4, int)
    table = explain.robustness(lambda v: model.predict(v, verbose=0), x, y, 48)
    assert table.loc["original", "accuracy"] == 1.0 and table.loc["original", "Δ accuracy (pt)"] == 0
    # the bright quadrant moves away under flips -> the model loses it
    assert table.loc["horizontal flip", "accuracy"] == 0.0 and table.loc["vertical flip", "accuracy"] == 0.0
    assert table.loc["horizontal flip", "Δ accuracy (pt)"] == -100
    assert table.loc["brightness x1.4", "accuracy"] == 1.0
    assert {"rotation 10°", "occlude eyes", "occlude mouth", "contrast x0.5"} <= set(table.index)


def test_region_shares_and_attention_by_region():
    maps = np.zeros((3, 48, 48), "float32")
    lo, hi = (round(f * 48) for f in explain.REGIONS["mouth"])
    maps[0, lo:hi] = 1.0  # all mass on the mouth band
    maps[1, :] = 1.0  # uniform
    maps[2, lo:hi] = 1.0
    shares = explain.region_shares(maps)
    assert shares.loc[0, "mouth"] == pytest.approx(1.0)
    assert shares.loc[1, "mouth"] == pytest.approx((hi - lo) / 48)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    table = explain.attention_by_region(maps, y_true=[3, 3, 0], y_pred=[3, 2, 0])
    assert list(table.index) == ["angry", "happy"]  # face 1 was misclassified: left out
    assert table.loc["happy", "mouth"] == pytest.approx(1.0) and table.loc["happy", "n"] == 1


def test_the_cli_explains_with_grad_cam_on_tensorflow_and_score_cam_on_the_other_backends():
    """grad_cam needs TensorFlow's GradientTape; a student on JAX or torch gets a map, not a refusal."""
    assert explain.default_method("tensorflow") == "grad_cam"
    assert explain.default_method("jax") == explain.default_method("torch") == "score_cam"
    assert explain.default_method() in explain.METHODS
