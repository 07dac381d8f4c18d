"""Data-parallel training through the backends' own engines (training.data_parallel), on this CPU split into two
virtual devices: one epoch on 2 devices equals one epoch on 1 device with the same global batch and seed. Each
backend runs in its own process (the device split must happen before the backend starts)."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, os, sys
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from fer_keras import data, training

    rng = np.random.default_rng(0)
    faces = data.Split(rng.integers(0, 256, (256, 48, 48), dtype=np.uint8), rng.integers(0, 7, 256),
                       np.arange(256))

    def one_epoch(devices):
        scope, record = training.data_parallel(devices, 64)
        with scope:
            keras.utils.set_random_seed(0)
            inp = keras.Input((48, 48, 1))
            x = keras.layers.Rescaling(1 / 255)(inp)
            x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
            x = keras.layers.GlobalAveragePooling2D()(x)
            model = keras.Model(inp, keras.layers.Dense(7)(x))
            training.compile_model(model, 1e-2, "sgd")
            history = training.fit(model, faces, None, 1, 64, seed=0, verbose=0)
        weights = np.concatenate([np.ravel(w) for w in model.get_weights()])
        return record, history.history["loss"], weights

    one, two = one_epoch(None), one_epoch(2)
    errors = {}
    try:
        training.data_parallel(9, 64)
    except ValueError as e:
        errors["9"] = str(e)
    try:
        training.data_parallel(2, 63)
    except ValueError as e:
        errors["odd batch"] = str(e)
    print(json.dumps({"one": one[0], "two": two[0], "loss_one": one[1], "loss_two": two[1],
                      "max_weight_diff": float(np.max(np.abs(one[2] - two[2]))), "errors": errors}))
''')


def _run(backend: str, tmp_path) -> dict:
    env = os.environ | {"KERAS_BACKEND": backend, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                        "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_one_epoch_on_two_virtual_devices_equals_one_device(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    r = _run(backend, tmp_path)
    engine = {"tensorflow": "tf.distribute.MirroredStrategy", "jax": "keras.distribution.DataParallel"}[backend]
    assert r["one"]["devices"] == 1 and r["two"]["devices"] == 2 and r["two"]["engine"] == engine
    assert r["two"]["global_batch"] == 64 and r["two"]["per_device_batch"] == 32
    assert len(r["loss_one"]) == len(r["loss_two"]) == 1
    assert r["loss_two"][0] == pytest.approx(r["loss_one"][0], rel=1e-4)
    assert r["max_weight_diff"] < 1e-4  # the same 4 steps, gradients summed over the two halves of each batch
    assert "this machine has 2" in r["errors"]["9"] and "Fix:" in r["errors"]["9"]
    assert "does not split evenly over 2 devices" in r["errors"]["odd batch"]


def test_devices_on_one_device_is_a_no_op_and_bad_flags_are_refused(capsys):
    from fer_keras import cli, training

    scope, record = training.data_parallel(None, 64)
    with scope:
        pass
    assert record == {"devices": 1, "engine": "none (one device)"}
    assert training.data_parallel(1, 63)[1]["devices"] == 1  # one device: any batch
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as stop:
            cli.main(["train", "--devices", bad])
        assert stop.value.code == 2
        assert "argument --devices" in capsys.readouterr().err.strip().splitlines()[-1]


PREDICT = textwrap.dedent('''
    import json, sys
    import numpy as np
    from fer_keras import data, modelfile

    faces = data.load_dataset("sample", usages=["PublicTest"])["PublicTest"].x
    out = {}
    for path in sys.argv[1:]:
        logits = modelfile.load_model(path).predict(data.to_model_input(faces))
        out[path] = np.asarray(logits, np.float64).tolist()
    print(json.dumps(out))
''')


def test_a_model_file_predicts_the_same_on_every_installed_backend(tmp_path):
    """The shipped .keras and a freshly trained one (TensorFlow, one epoch on the sample) load and predict the
    same classes on the sample's PublicTest faces under TensorFlow, JAX and torch (the ones installed)."""
    import numpy as np

    from fer_keras import apply, experiment

    fresh = tmp_path / "fresh"
    experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, out_dir=fresh, verbose=0, val_fraction=0)
    files = [str(apply.default_model_path()), str(fresh / "model.keras")]
    script = tmp_path / "predict.py"
    script.write_text(PREDICT)
    backends = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]
    assert len(backends) >= 2, f"only {backends} installed: requirements.txt pins jax for this test"
    logits = {}
    for backend in backends:
        proc = subprocess.run([sys.executable, str(script), *files], capture_output=True, text=True, timeout=600,
                              env=os.environ | {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert proc.returncode == 0, f"{backend}: {proc.stderr[-2000:]}"
        logits[backend] = {k: np.array(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    for backend in backends[1:]:
        for path in files:
            a, b = logits["tensorflow"][path], logits[backend][path]
            assert a.shape == b.shape and len(a) > 100
            np.testing.assert_allclose(b, a, atol=1e-3, err_msg=f"{backend} vs tensorflow on {path}")
            top2 = np.sort(a, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 1e-3  # a near-tie may flip on float noise
            assert (a.argmax(1) == b.argmax(1))[clear].all(), f"{backend} vs tensorflow on {path}"
