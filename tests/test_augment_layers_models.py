import keras
import numpy as np
import pytest

from fer_keras import augment, models, training
from fer_keras.layers import CBAM, RandomGain


def faces(n=2, size=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 1)).astype(np.float32)


# ------------------------------------------------------------------ augmentation
def test_ten_crops_views():
    x = np.arange(2 * 48 * 48).reshape(2, 48, 48)
    views = augment.ten_crops(x, 44)
    assert views.shape == (10, 2, 44, 44)
    np.testing.assert_array_equal(views[0], x[:, :44, :44])
    np.testing.assert_array_equal(views[3], x[:, 4:, 4:])
    np.testing.assert_array_equal(views[4], x[:, 2:46, 2:46])
    np.testing.assert_array_equal(views[5], x[:, :44, :44][:, :, ::-1])
    with pytest.raises(ValueError, match="smaller than the image"):
        augment.ten_crops(x, 48)


def test_random_crops_in_bounds():
    x = np.arange(3 * 48 * 48).reshape(3, 48, 48)
    crops = augment.random_crops(x, 44, np.random.default_rng(0))
    assert crops.shape == (3, 44, 44)
    for img, crop in zip(x, crops):
        t, l = np.argwhere(img == crop[0, 0])[0]
        np.testing.assert_array_equal(img[t:t + 44, l:l + 44], crop)


@pytest.mark.parametrize("level", ["basic", "strong", "full", "strong+erase"])
def test_augmentation_is_identity_at_inference_and_random_in_training(level):
    aug = augment.build_augmentation(level, seed=1)
    x = faces(4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)
    y = keras.ops.convert_to_numpy(aug(x, training=True))
    assert y.shape == x.shape and not np.allclose(y, x)
    assert augment.build_augmentation("none") is None
    with pytest.raises(ValueError):
        augment.build_augmentation("extreme")
    with pytest.raises(ValueError):
        augment.build_augmentation("none+erase")  # erasing rides on a level


def test_erasing_fills_one_rectangle_in_about_half_the_faces():
    aug = augment.build_augmentation("basic+erase", seed=0)
    assert [layer.name for layer in aug.layers] == ["face_affine", "erase"]
    x = np.full((200, 40, 40, 1), 128.0, np.float32)
    y = keras.ops.convert_to_numpy(aug.get_layer("erase")(x, training=True))[..., 0]
    changed = y != 128.0
    erased = changed.any(axis=(1, 2))
    assert 70 <= erased.sum() <= 130  # probability ERASE_P = 0.5
    for mask in changed[erased]:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        area = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert area <= 0.4 * 40 * 40 and mask.sum() >= 0.8 * area  # one rectangle (noise may hit 128 by chance)
    assert y.min() >= 0 and y.max() <= 255


def _two_kinds_of_face(n=8, size=40):
    """Faces that are all 10 (class 0) or all 200 (class 1), one-hot labels and per-face weights 1 or 3."""
    cls = np.arange(n) % 2
    x = np.where(cls[:, None, None, None] == 0, 10.0, 200.0) * np.ones((n, size, size, 1), np.float32)
    return x, np.eye(2, dtype=np.float32)[cls], np.where(cls == 0, 1.0, 3.0).astype(np.float32)


def test_mixup_blends_faces_labels_and_weights_with_one_share():
    x, y, w = _two_kinds_of_face()
    mx, my, mw = augment.mix_batch(x, y, "mixup", np.random.default_rng(0), weights=w)
    np.testing.assert_allclose(my.sum(1), 1.0, rtol=1e-6)
    # each face is flat: its pixel says how much class 1 went into it, and its label says the same share
    share = (mx[:, 0, 0, 0] - 10.0) / 190.0
    np.testing.assert_allclose(my[:, 1], share, atol=1e-5)
    np.testing.assert_allclose(mw, 1.0 + 2.0 * share, atol=1e-5)
    assert (mx.std(axis=(1, 2, 3)) < 1e-3).all() and not np.isin(my[:, 1], (0.0, 1.0)).all()
    np.testing.assert_array_equal(x[:, 0, 0, 0], np.tile([10.0, 200.0], 4))  # the input is left alone


def test_cutmix_pastes_one_box_and_the_label_share_is_its_area():
    x, y, _ = _two_kinds_of_face(n=64)
    mx, my, _ = augment.mix_batch(x, y, "cutmix", np.random.default_rng(1))
    assert set(np.unique(mx)) <= {10.0, 200.0}  # pasted, not blended
    boxes = mx != x
    for face in range(64):
        changed = boxes[face, ..., 0]
        if changed.any():  # the one box, where the partner face differs
            rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
            assert changed.sum() == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    changed = boxes.any(axis=(1, 2, 3))  # faces whose partner is of the other kind (or none: the box is empty)
    assert changed.any() and (~changed).any()
    area = boxes[changed][0].sum() / 40 ** 2
    assert all(b.sum() / 40 ** 2 == area for b in boxes[changed])  # one box for the whole batch
    own = y.argmax(1)
    np.testing.assert_allclose(my[changed, own[changed]], 1.0 - area, atol=1e-6)  # label share left = area left
    np.testing.assert_allclose(my[~changed], y[~changed], atol=1e-6)  # a partner of the same kind leaves its label
    np.testing.assert_allclose(my.sum(1), 1.0, rtol=1e-6)


def test_mixing_is_drawn_from_its_generator_and_refuses_integer_labels():
    x, y, _ = _two_kinds_of_face()
    for kind in ("mixup", "cutmix"):
        a = augment.mix_batch(x, y, kind, np.random.default_rng(5))
        b = augment.mix_batch(x, y, kind, np.random.default_rng(5))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="one-hot"):
        augment.mix_batch(x, y.argmax(1), "mixup", np.random.default_rng(0))
    with pytest.raises(ValueError, match="choose one of"):
        augment.mix_batch(x, y, "blend", np.random.default_rng(0))


def test_random_gain_range_and_clip():
    layer = RandomGain(0.8, 1.2, seed=3)
    x = np.full((64, 4, 4, 1), 100.0, np.float32)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    gains = y[:, 0, 0, 0] / 100
    assert gains.min() >= 0.8 - 1e-5 and gains.max() <= 1.2 + 1e-5 and gains.std() > 0.05
    assert np.allclose(y, y[:, :1, :1, :])  # one gain per image
    bright = keras.ops.convert_to_numpy(layer(np.full((8, 2, 2, 1), 250.0, np.float32), training=True))
    assert bright.max() <= 255.0
    with pytest.raises(ValueError):
        RandomGain(1.2, 0.8)


# ------------------------------------------------------------------ CBAM
def test_cbam_shapes_and_gates():
    layer = CBAM(reduction=4)
    x = faces(2, 12).repeat(8, axis=-1) / 255.0
    out = layer(x)
    channel, spatial = layer.gates(keras.ops.convert_to_tensor(x))
    assert out.shape == x.shape
    assert tuple(channel.shape) == (2, 8) and tuple(spatial.shape) == (2, 12, 12, 1)
    assert layer.mlp_hidden.units == 2  # 8 channels / reduction 4
    ch = keras.ops.convert_to_numpy(channel)
    assert ((ch > 0) & (ch < 1)).all()


def test_cbam_is_noop_when_gates_are_one():
    layer = CBAM(reduction=2)
    x = faces(2, 6).repeat(4, axis=-1) / 255.0
    layer(x)
    layer.mlp_out.set_weights([np.zeros((2, 4)), np.full(4, 50.0)])        # sigmoid(2*50) == 1.0 in float32
    layer.spatial_conv.set_weights([np.zeros((7, 7, 2, 1)), np.full(1, 50.0)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x, rtol=1e-6)


# ------------------------------------------------------------------ models
def test_s004_baseline_parameter_count():
    model = models.build_s004_baseline()
    assert model.count_params() == 3_623_239
    assert model.get_layer("last_conv").output.shape[1:] == (2, 2, 256)


def test_s004_width_scales_the_design_not_its_shape():
    from fer_keras import flops

    full, quarter = models.build_s004_baseline(), models.build_s004_baseline(width=16)
    assert [layer.name for layer in full.layers] == [layer.name for layer in quarter.layers]
    assert quarter.get_layer("last_conv").output.shape[1:] == (2, 2, 64) and quarter.get_layer("fc1").units == 256
    ratio = flops.count_macs(full) / flops.count_macs(quarter)
    assert 14 < ratio < 17  # convolutions scale with width squared


def test_gap_head_arithmetic_from_real_models():
    flat = models.build_model("cbam_cnn")
    gap = models.build_model("gap_cnn")
    h, w, c = flat.get_layer("last_conv").output.shape[1:]
    assert flat.get_layer("fc1").count_params() == h * w * c * 1024 + 1024
    assert gap.get_layer("fc1").count_params() == c * 1024 + 1024
    assert flat.count_params() - gap.count_params() == (h * w - 1) * c * 1024


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_builds_and_predicts_logits(name):
    model = models.build_model(name, augment="strong", num_classes=8, width=8)
    assert model.name == name and model.output_shape == (None, 8)
    last = model.get_layer("last_conv").output.shape  # Grad-CAM's layer: a spatial map, not a vector
    assert len(last) == 4 and last[1] >= 1 and last[2] >= 1
    size = model.input_shape[1]
    assert model.predict(faces(2, size), verbose=0).shape == (2, 8)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_dropout_draws_from_the_build_seed(name):
    """An unseeded Dropout draws its masks from torch's global generator on the torch backend, which no checkpoint
    keeps: a resumed run there differed from the straight one (seen on one H100 and its CPU). Seeded, its state is a
    SeedGenerator that training.seed_states saves and restores."""
    extra = {"dropout": 0.3} if name == "speed_cnn" else {}
    model = models.build_model(name, augment="none", width=8, seed=5, **extra)
    seeds = [layer.seed for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dropout)]
    assert None not in seeds and len(set(seeds)) == len(seeds), seeds  # seeded, one stream per layer
    states = training.seed_states(model)
    assert len(states) >= len(seeds)  # each one's state goes into the run's checkpoint


def test_model_options_validated():
    with pytest.raises(ValueError, match="head"):
        models.build_s004_residual(head="dense")
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model("vgg99")


def test_trainable_params_excludes_bn_statistics():
    model = models.build_s004_baseline()
    n_bn_channels = 2 * (64 + 128 + 256)
    assert models.trainable_params(model) == model.count_params() - 2 * n_bn_channels


def test_random_face_affine_flip_only_and_identity_at_inference():
    from fer_keras.layers import RandomFaceAffine

    x = faces(32)
    layer = RandomFaceAffine(rotation=0, shift=0, zoom=0, flip=True, seed=2)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    same = [np.allclose(o, a, atol=1e-3) for o, a in zip(out, x)]
    mirrored = [np.allclose(o, a[:, ::-1], atol=1e-3) for o, a in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 32
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_random_face_affine_shift_moves_content_and_brightness_clips():
    from fer_keras.layers import RandomFaceAffine

    img = np.zeros((16, 48, 48, 1), np.float32)
    img[:, 20:28, 20:28] = 200.0
    layer = RandomFaceAffine(rotation=0, shift=0.1, zoom=0, flip=False, brightness=(1.2, 1.3), seed=0)
    out = keras.ops.convert_to_numpy(layer(img, training=True))
    centres = [np.argwhere(o[..., 0] > 100).mean(axis=0) for o in out]
    assert max(np.abs(np.array(centres) - 23.5).max(axis=1)) <= 0.1 * 48 + 1
    assert np.std([c[1] for c in centres]) > 0.5  # shifts differ per face
    assert out.max() <= 255.0 and out.max() >= 239.0  # 200 * [1.2, 1.3], clipped at 255
    clone = RandomFaceAffine.from_config(layer.get_config())
    assert clone.brightness == (1.2, 1.3) and clone.shift == 0.1


def test_new_head_keeps_the_shared_classes_and_fresh_restarts_every_weight():
    from fer_keras import config

    net = models.build_model("tiny_cnn", width=4)
    net.set_weights([w + 0.25 for w in net.get_weights()])  # "trained": unlike any fresh initialisation
    ck = config.LABEL_SETS["ckplus"]  # FER2013's classes but neutral -> contempt
    tuned = models.new_head(net, config.FER2013_CLASSES, ck)
    x = faces(3)
    old, new = (keras.ops.convert_to_numpy(m(x, training=False)) for m in (net, tuned))
    assert new.shape == (3, len(ck))
    shared = [ck.index(c) for c in config.FER2013_CLASSES if c in ck]
    np.testing.assert_allclose(new[:, shared], old[:, [config.FER2013_CLASSES.index(ck[j]) for j in shared]],
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(new[:, ck.index("contempt")], old[:, config.FER2013_CLASSES.index("neutral")])
    fresh = models.new_head(net, config.FER2013_CLASSES, ck, fresh=True)
    assert fresh.output_shape == (None, len(ck)) and len(fresh.get_weights()) == len(tuned.get_weights())
    assert not any(np.allclose(a, b) for a, b in zip(tuned.get_weights()[:-2], fresh.get_weights()[:-2]))


@pytest.mark.parametrize("tta,size", [("ten_crop", 40), ("flip", 48), ("flip", 44)])
def test_a_model_with_its_tta_inside_averages_the_logits_of_the_kit_views(tta, size, tmp_path):
    from fer_keras import modelfile

    net = models.build_model("speed_cnn", input_size=size, widths=(4, 8, 8), augment="none", seed=0)
    wrapped = models.with_tta(net, tta)
    assert wrapped.input_shape == (None, 48, 48, 1) and wrapped.output_shape == (None, 7)
    x = faces(3)
    if tta == "ten_crop":
        views = augment.ten_crops(x, size)
    else:
        centre = augment.center_crop(x, size)
        views = np.stack([centre, centre[:, :, ::-1]])
    expected = np.mean([keras.ops.convert_to_numpy(net(v)) for v in views], axis=0)
    got = keras.ops.convert_to_numpy(wrapped(x))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    path = modelfile.save_model(wrapped, tmp_path / "w.keras", modelfile.make_metadata(wrapped))
    again = modelfile.load_model(path)  # safe mode: the kit's registered layers only
    assert again.metadata["input_size"] == [48, 48]
    np.testing.assert_allclose(again.predict(x), got, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="choose one of"):
        models.with_tta(net, "five_crop")
    # fine-tuning, saliency maps: the network inside, as it was
    assert models.without_tta(wrapped) is net and models.without_tta(net) is net
    from fer_keras import config

    ck = models.new_head(again.keras_model, config.FER2013_CLASSES, config.FER2013_CLASSES[:6])
    assert ck.input_shape == (None, size, size, 1) and ck.output_shape == (None, 6)


def test_speed_cnn_dropout_adds_a_layer_not_weights():
    plain, dropped = models.build_model("speed_cnn", seed=0), models.build_model("speed_cnn", dropout=0.3, seed=0)
    assert dropped.get_layer("dropout").rate == 0.3 and "dropout" not in [layer.name for layer in plain.layers]
    assert plain.count_params() == dropped.count_params()


def test_whitened_stem_decorrelates_its_patches_and_stays_frozen():
    from fer_keras import data

    faces = data.load_sample(["Training"])["Training"].x
    net = models.build_model("speed_cnn", whiten=True, seed=0)
    plain = models.build_model("speed_cnn", seed=0)
    assert models.trainable_params(plain) - models.trainable_params(net) == 4 * 4 * 1 * 32  # the stem is frozen
    models.whiten_stem(net, faces)
    out = keras.Model(net.inputs, net.get_layer("stem_conv").output).predict(faces[:200], verbose=0)
    inner = out[:, 1:-1, 1:-1, :16].reshape(-1, 16)  # 'same' padding: the border patches hold zeros
    cov = np.cov(inner, rowvar=False)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.05  # decorrelated
    # unit variance, less where an eigenvalue is near eps (5e-4): variance lambda / (lambda + eps)
    assert np.all(np.diag(cov)[:8] > 0.75) and np.all(np.diag(cov) < 1.1) and np.all(np.diff(np.diag(cov)[:8]) < 0.1)
    np.testing.assert_allclose(out[..., 16:], -out[..., :16], atol=1e-5)  # each filter and its negative
    with pytest.raises(ValueError, match="a stem width of at most 32"):
        models.whiten_stem(models.build_model("speed_cnn", width=48, whiten=True), faces)
