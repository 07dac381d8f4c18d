"""modelfile: the record that travels with every saved model is checked, and checked against its network."""

import json
import zipfile

import keras
import pytest

from fer_keras import modelfile, models


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    return models.build_model("small_cnn", width=8, augment="none")


def _with_record(src, dst, raw: bytes):
    """A copy of the .keras zip `src` whose fer_keras record is `raw`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename != modelfile.META_NAME:
                zout.writestr(item, zin.read(item.filename))
        zout.writestr(modelfile.META_NAME, raw)
    return dst


def test_a_good_record_round_trips(net, tmp_path):
    path = modelfile.save_model(net, tmp_path / "m.keras", modelfile.make_metadata(net))
    loaded = modelfile.load_model(path)
    assert loaded.metadata["class_names"][0] == "angry" and loaded.metadata["input_size"] == [48, 48]


@pytest.mark.parametrize("raw, message", [
    (b"{}", "lacks class_names, input_size"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"class_names": ["a", "a"], "input_size": [48, 48]}).encode(), "distinct"),
    (json.dumps({"class_names": ["a", "b"], "input_size": [48]}).encode(), r"input_size \[48\]"),
    (json.dumps({"class_names": ["a", "b"], "input_size": [48, 48], "channels": 4}).encode(), "channels 4"),
])
def test_a_bad_record_is_one_clear_error_naming_the_file(net, tmp_path, raw, message):
    good = modelfile.save_model(net, tmp_path / "good.keras", modelfile.make_metadata(net))
    bad = _with_record(good, tmp_path / "bad.keras", raw)
    with pytest.raises(modelfile.ModelFileError, match=message) as err:
        modelfile.load_model(bad)
    assert str(bad) in str(err.value) and "Fix:" in str(err.value)


def test_a_record_that_does_not_match_its_network_is_refused(net, tmp_path):
    meta = modelfile.make_metadata(net) | {"class_names": ["happy", "sad", "neutral"]}  # 3 names, 7 outputs
    path = modelfile.save_model(net, tmp_path / "three.keras", meta)
    with pytest.raises(modelfile.ModelFileError, match="7 outputs but its record names 3 classes"):
        modelfile.load_model(path)
    meta = modelfile.make_metadata(net) | {"input_size": [44, 44]}
    path = modelfile.save_model(net, tmp_path / "size.keras", meta)
    with pytest.raises(modelfile.ModelFileError, match="44x44"):
        modelfile.load_model(path)


def test_a_tflite_record_length_that_does_not_fit_is_refused(tmp_path):
    blob = json.dumps({"class_names": ["a", "b"], "input_size": [48, 48]}).encode()
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\0" * 64 + blob + (10 ** 12).to_bytes(8, "little") + modelfile.TFLITE_MAGIC)
    with pytest.raises(modelfile.ModelFileError, match="length field"):
        modelfile.read_metadata(path)
    path.write_bytes(b"\0" * 64 + blob + len(blob).to_bytes(8, "little") + modelfile.TFLITE_MAGIC)
    assert modelfile.read_metadata(path)["class_names"] == ["a", "b"]
