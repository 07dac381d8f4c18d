"""Faces in photos: reading any image safely, detection, the predict CLI, video, the web demo, and a corpus
of >= 30 malformed or hostile files (tests/hostile_corpus.py) that must each give a clear message (no crash, bounded memory)."""

import json
import resource
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import hostile_corpus
from fer_keras import apply, cli, data, modelfile, models, webdemo


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    m = models.build_model("small_cnn", width=8)
    return modelfile.save_model(m, tmp_path_factory.mktemp("m") / "tiny.keras", modelfile.make_metadata(m))


@pytest.fixture(scope="module")
def photo():
    """A grey 'photo': a FER face scaled up on a flat background."""
    import cv2

    face = data.load_sample(["PublicTest"])["PublicTest"].x[160]
    img = np.full((400, 600), 128, np.uint8)
    img[100:300, 200:400] = cv2.resize(face, (200, 200))
    return img


def test_bad_input_corpus_gives_clear_messages_and_bounded_memory(tmp_path, photo, model_path):
    corpus = hostile_corpus.write_images(tmp_path, photo)  # the image part of issue 19's corpus
    assert len(corpus) >= 30
    recognizer = apply.Recognizer(model_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {}
    for name, path in corpus.items():
        try:
            outcomes[name] = apply.predict_image(path, recognizer, tmp_path / "out")
        except apply.ImageError as err:
            assert str(path) in str(err) or path.name in str(err), (name, str(err))
            assert "Fix" in str(err) or "no such file" in str(err), (name, str(err))
            outcomes[name] = str(err)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 600, f"memory grew by {grown_mb:.0f} MB"
    refused = {n for n, o in outcomes.items() if isinstance(o, str)}
    for name in ("zero_bytes.jpg", "truncated.jpg", "random_bytes.jpg", "pdf_renamed.jpg", "huge_20k.png",
                 "one_pixel.png", "missing.jpg", "wide_100k.png", "html_renamed.png"):
        assert name in refused, name
    assert "PDF" in outcomes["pdf_renamed.jpg"] and "downscale" in outcomes["huge_20k.png"]
    for name in ("cmyk.jpg", "grey16.png", "rgba.png", "palette.png", "animated.gif", "photo.webp", "jpeg_named.png"):
        assert isinstance(outcomes[name], dict), (name, outcomes[name])
    assert outcomes["blank.png"]["faces"] == [] and "no face" in outcomes["blank.png"]["note"]
    unchanged = np.asarray(Image.open(outcomes["blank.png"]["output"]).convert("L"))
    assert (unchanged == 200).all()


def test_detection_crop_and_annotation(photo, model_path):
    boxes = apply.detect_faces(photo)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 180 <= x <= 230 and 80 <= y <= 130 and 150 <= w <= 230
    crops = apply.crop_faces(photo, boxes)
    assert crops.shape == (1, 48, 48) and crops.dtype == np.uint8
    faces = apply.Recognizer(model_path).analyse(photo)
    assert len(faces) == 1 and abs(sum(faces[0]["probabilities"].values()) - 1) < 1e-4
    drawn = apply.annotate(photo, faces)
    assert drawn.shape == (400, 600, 3) and (drawn[..., 1] == 200).any()


def test_predict_cli_images_json_csv_and_errors(tmp_path, photo, model_path, capsys):
    Image.fromarray(photo).save(tmp_path / "face.png")
    Image.new("L", (200, 200), 30).save(tmp_path / "empty.png")
    (tmp_path / "broken.jpg").write_bytes(b"")
    code = cli.main(["predict", str(tmp_path / "face.png"), str(tmp_path / "empty.png"), str(tmp_path / "broken.jpg"),
                     "--model", str(model_path), "--out", str(tmp_path / "out"), "--json", str(tmp_path / "r.json"),
                     "--csv", str(tmp_path / "r.csv")])
    assert code == 1  # one file failed, the others were processed
    captured = capsys.readouterr()
    assert "1 face(s)" in captured.out and "no face found" in captured.out
    assert "broken.jpg" in captured.err and "Traceback" not in captured.err
    records = json.loads((tmp_path / "r.json").read_text())
    assert len(records) == 3 and (tmp_path / "out" / "face_annotated.png").is_file()
    import pandas as pd

    table = pd.read_csv(tmp_path / "r.csv")
    assert len(table) == 1 and {"label", "happy", "x", "w"} <= set(table.columns)


def test_predict_video(tmp_path, photo, model_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (600, 400))
    for shift in range(6):
        writer.write(cv2.cvtColor(np.roll(photo, 5 * shift, axis=1), cv2.COLOR_GRAY2BGR))
    writer.release()
    record = apply.predict_video(path, apply.Recognizer(model_path), tmp_path / "out", progress=False)
    assert record["frames"] == 6 and len(record["analysed"]) == 6
    assert sum(len(f["faces"]) for f in record["analysed"]) >= 5
    cap = cv2.VideoCapture(record["output"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    with pytest.raises(apply.ImageError, match="fake.mp4"):
        apply.predict_video(tmp_path / "fake.mp4", apply.Recognizer(model_path), tmp_path / "out", progress=False)


@pytest.fixture
def server(model_path):
    srv = webdemo.make_server(apply.Recognizer(model_path), port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_web_demo_over_http(server, photo):
    page = urllib.request.urlopen(server + "/").read().decode()
    assert 'id="file"' in page and "getUserMedia" in page and "tiny.keras" in page
    body = hostile_corpus.encode(Image.fromarray(photo), "PNG")
    reply = json.loads(urllib.request.urlopen(urllib.request.Request(server + "/api/predict", data=body)).read())
    assert len(reply["faces"]) == 1 and reply["image"].startswith("data:image/png;base64,")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(server + "/api/predict", data=b"%PDF-1.4 nope"))
    assert err.value.code == 400 and "not an image" in json.loads(err.value.read())["error"]


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not _chromium(), reason="needs Debian's chromium (apt install chromium) for the browser test")
def test_web_demo_in_headless_chromium(server, photo, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    Image.fromarray(photo).save(tmp_path / "face.png")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(server + "/")
        page.set_input_files("#file", str(tmp_path / "face.png"))
        page.wait_for_selector("#bars div.row", timeout=30000)
        assert "1 face(s)" in page.inner_text("#status")
        assert page.locator("#bars div.row").count() == 7
        assert page.eval_on_selector("#result", "img => img.naturalWidth") == 600
        browser.close()


def test_phone_photos_are_read_upright_from_their_exif_orientation(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate 90 degrees clockwise
    Image.fromarray(photo).save(tmp_path / "phone.jpg", exif=exif)  # stored 600 wide, 400 high
    grey = apply.read_image(tmp_path / "phone.jpg")
    assert grey.shape == (600, 400)  # shown (and read) 400 wide, 600 high
    upright = np.rot90(grey, k=1)  # undo the clockwise turn: back to the stored pixels
    assert np.abs(upright.astype(int) - photo.astype(int)).mean() < 3  # JPEG noise only


@pytest.mark.parametrize("mode, values, expected", [
    ("F", np.linspace(0, 1, 64 * 64, dtype=np.float32), 127.5),  # float in [0, 1]: x255, not black
    ("I;16", np.linspace(0, 65535, 64 * 64).astype(np.uint16), 127.5),  # 16-bit full scale: /257
])
def test_float_and_16_bit_images_are_scaled_by_their_range(tmp_path, mode, values, expected):
    path = tmp_path / ("img.tiff" if mode == "F" else "img.png")
    img = Image.fromarray(values.reshape(64, 64))  # float32 -> mode F, uint16 -> I;16
    assert img.mode == mode
    img.save(path)
    grey = apply.read_image(path)
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
    assert abs(grey.mean() - expected) < 1.0
    dark = apply.numeric_to_grey(np.full((20, 20), 1000.0), "I;16")  # a dark 16-bit image stays dark
    assert dark.max() == 4  # 1000 / 257, not stretched to white


def test_outputs_of_same_named_inputs_never_overwrite_each_other(tmp_path, photo, model_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo).save(tmp_path / folder / "face.png")
    Image.fromarray(photo).save(tmp_path / "a" / "face.jpg")
    paths = [tmp_path / "a" / "face.png", tmp_path / "b" / "face.png", tmp_path / "a" / "face.jpg"]
    records = apply.predict_paths(paths, model_path, tmp_path / "out", progress=False)
    outputs = [r["output"] for r in records]
    assert len(set(outputs)) == 3 and all(Path(o).is_file() for o in outputs)
    assert Path(outputs[1]).name == "face_annotated_2.png" and Path(outputs[2]).name == "face_annotated_3.png"


def test_shipped_models_are_found_by_name_and_a_missing_name_is_one_line(model_path, tmp_path, monkeypatch, capsys):
    assert apply.resolve_model() == apply.default_model_path() == apply.shipped_model("tiny")
    assert modelfile.read_metadata(apply.resolve_model("tiny"))["class_names"]  # the kit's own shipped file
    assert modelfile.read_metadata(apply.resolve_model("accurate"))["shipped_as"] == "accurate"  # and the mid-size one
    assert apply.resolve_model(model_path) == model_path  # a path stays a path
    monkeypatch.setattr(apply, "PRETRAINED_DIR", tmp_path)  # a folder with no 'accurate' model
    for argv, what in ((["predict", "x.jpg", "--model", "accurate"], "no 'accurate' model is shipped"),
                       (["predict", "x.jpg", "--model", "nope"], None)):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and (what is None or what in err[0])
    with pytest.raises(apply.ImageError, match="choose one of tiny, accurate"):
        apply.shipped_model("huge")


def test_an_opencv_without_the_haar_detector_is_one_line_naming_the_fix(monkeypatch):
    """OpenCV 5 wheels (opencv-python-headless 5.0.0.93, seen on the GPU machine) have no CascadeClassifier."""
    import types

    fake = types.SimpleNamespace(__version__="5.0.0", data=types.SimpleNamespace(haarcascades="/nowhere"))
    monkeypatch.setitem(sys.modules, "cv2", fake)
    with pytest.raises(apply.ImageError, match=r"OpenCV 5.0.0 has no Haar face detector .*'opencv-python-headless<5'"):
        apply._cascade()
