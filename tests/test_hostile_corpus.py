"""Issue 19's corpus of our own: >= 150 hostile inputs (CSV, model files, images, video, flags, output paths;
tests/hostile_corpus.py generates them) through the real CLI entry point, plus injected faults. Each works, or
fails with one `error:` line naming the file or flag; none ends in a traceback."""

import json

import keras
import numpy as np
import pytest

import hostile_corpus
from fer_keras import cli, compress, data, modelfile, models


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("hostile")
    keras.utils.set_random_seed(0)
    net = models.build_model("small_cnn", width=8)
    model = modelfile.save_model(net, folder / "tiny.keras", modelfile.make_metadata(net))
    tflite = compress.export_tflite(model, folder / "tiny.tflite", mode="float32")
    face = data.load_sample(["PublicTest"])["PublicTest"].x[160]
    photo = np.full((400, 600), 128, np.uint8)
    photo[100:300, 200:400] = cv2.resize(face, (200, 200))
    return folder, {c.name: c for c in hostile_corpus.build(folder, model, tflite, photo)}


def test_the_corpus_is_large_and_covers_every_kind_of_input(corpus):
    _, cases = corpus
    kinds = {name.split("/")[0] for name in cases}
    assert len(cases) >= 150 and kinds == {"csv", "model", "image", "video", "flag", "output"}
    assert sum(c.expect == "ok" for c in cases.values()) >= 25  # odd but valid input must work, not be refused


def test_every_case_works_or_fails_with_one_line_naming_the_file_or_flag(corpus, capsys, monkeypatch):
    folder, cases = corpus
    monkeypatch.setenv("FER_KERAS_RUNS", str(folder / "run_states"))
    failures = []
    for name, case in cases.items():
        try:
            code = cli.main(case.argv)
        except SystemExit as stop:  # argparse's refusals
            code = stop.code
        except BaseException as err:  # noqa: BLE001 - a traceback is exactly what this test forbids
            failures.append(f"{name}: raised {type(err).__name__}: {err}")
            capsys.readouterr()
            continue
        out, err = capsys.readouterr()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        if "Traceback" in err:
            failures.append(f"{name}: traceback")
        elif case.expect == "ok":
            if code != 0 or errors:
                failures.append(f"{name}: expected success, exit {code}: {err.strip()[-300:]}")
            elif case.check and not case.check(folder, out):
                failures.append(f"{name}: succeeded but its output check failed")
        elif code not in (1, 2) or len(errors) != 1:
            failures.append(f"{name}: expected one error line and exit 1/2, got exit {code}: {err.strip()[-300:]}")
        elif missing := [n for n in case.names if n not in errors[0]]:
            failures.append(f"{name}: error line does not name {missing}: {errors[0]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)


def test_refused_runs_leave_nothing_behind(corpus):
    folder, _ = corpus
    assert not (folder / "never").exists()  # every refused train flag was refused before the output folder
    assert not list(folder.rglob(".*.partial.keras"))


def test_a_crash_while_saving_leaves_no_half_written_model(tmp_path, monkeypatch):
    """Fault injection: the save dies half-way; the old model.keras stays whole and no temporary file lingers."""
    keras.utils.set_random_seed(0)
    net = models.build_model("small_cnn", width=8)
    path = modelfile.save_model(net, tmp_path / "model.keras", modelfile.make_metadata(net))
    before = path.read_bytes()

    def dies(self, *args, **kwargs):
        with open(args[0], "wb") as f:  # half a file, then the crash
            f.write(b"PK\x03\x04 half")
        raise OSError("disk full")
    monkeypatch.setattr(keras.Model, "save", dies)
    with pytest.raises(OSError, match="disk full"):
        modelfile.save_model(net, path, modelfile.make_metadata(net))
    assert path.read_bytes() == before and modelfile.load_model(path).metadata["class_names"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_interrupted_training_exits_130_and_resumes(tmp_path, capsys, monkeypatch):
    """Fault injection: Ctrl-C after the first epoch; the run is resumable and the resumed run completes."""
    from fer_keras import training

    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "states"))
    original = training.RunCheckpoint.on_epoch_end

    def interrupt_after_first(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt
    monkeypatch.setattr(training.RunCheckpoint, "on_epoch_end", interrupt_after_first)
    out = tmp_path / "run"
    argv = ["train", "--model", "tiny_cnn", "--epochs", "2", "--batch-size", "64", "--out", str(out)]
    assert cli.main(argv) == 130
    assert "--resume" in capsys.readouterr().err and not (out / "model.keras").exists()
    monkeypatch.setattr(training.RunCheckpoint, "on_epoch_end", original)
    assert cli.main(["train", "--resume", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["resumed_from_epoch"] == 1 and results["epochs_run"] == 2
