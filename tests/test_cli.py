import json
from pathlib import Path

import pytest

from conftest import fer_rows, write_fer_csv
from fer_keras import cli


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--epochs", "1", "--out", str(out), "--results-json", str(out / "copy" / "r.json"),
                     "--augment", "strong", "--class-weights", "--reduce-lr", "2", "--early-stopping", "3"])
    assert code == 0
    return out


def test_train_writes_everything(trained_run):
    for name in ("model.keras", "results.json", "history.csv", "per_class.csv", "learning_curves.png",
                 "confusion_matrix.png", "copy/r.json"):
        assert (trained_run / name).is_file(), name
    results = json.loads((trained_run / "results.json").read_text())
    assert results["data"]["test_split"] == "PublicTest" and results["data"]["test_n"] == 350
    assert results["data"]["train_n"] + results["data"]["val_n"] == 350
    prov = results["provenance"]
    assert {"command", "commit", "backend", "hardware", "keras"} <= set(prov)
    assert results["config"]["seed"] == 0 and results["config"]["class_weights"] is True
    assert 0 <= results["test"]["accuracy"] <= 1


def test_evaluate_contract_json(trained_run, tmp_path, capsys):
    out = tmp_path / "ev.json"
    assert cli.main(["evaluate", str(trained_run / "model.keras"), "--data", "sample", "--split", "PublicTest",
                     "--json", str(out), "--report-dir", str(tmp_path / "rep")]) == 0
    m = json.loads(out.read_text())
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n", "ten_crop"} <= set(m)
    assert (tmp_path / "rep" / "confusion_matrix.png").is_file()
    assert "macro-F1" in capsys.readouterr().out


def test_evaluate_several_models_scores_their_mean_logits_and_each_member(trained_run, tmp_path, capsys):
    import numpy as np

    from fer_keras import data, evaluation, modelfile
    from fer_keras.apply import shipped_model

    paths = [str(trained_run / "model.keras"), str(shipped_model("tiny", ".keras"))]
    out = tmp_path / "ens.json"
    assert cli.main(["evaluate", *paths, "--flip", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    test = data.load_dataset("sample", "fer2013", usages=["PublicTest"])["PublicTest"]
    members = [modelfile.load_model(p) for p in paths]
    by_hand = [np.mean([m_.predict(data.to_model_input(v)) for m_ in members], axis=0)
               for v in (test.x, test.x[:, :, ::-1])]
    expected = np.mean([evaluation.softmax(z) for z in by_hand], axis=0).argmax(1)
    assert m["accuracy"] == pytest.approx(float(np.mean(expected == test.y)))
    assert list(m["members"]) == paths and m["tta"] == "flip" and m["n"] == 350
    assert all(m["members"][p]["accuracy"] == evaluation.evaluate_file(p, tta="flip")["accuracy"] for p in paths)
    assert m["provenance"]["command"].startswith("python -m fer_keras evaluate ")
    # its cost from scratch: the member run found beside its file; the shipped file has none, so no total
    from fer_keras.experiment import run_minutes

    own = json.loads((trained_run / "results.json").read_text())
    assert m["cost"]["member_run_minutes"] == {paths[0]: round(run_minutes(own), 2), paths[1]: None}
    assert m["cost"]["total_minutes"] is None and m["cost"]["evaluation_seconds"] > 0
    assert "ensemble of" in capsys.readouterr().out
    assert cli.main(["evaluate", paths[0], paths[0]]) == 2
    assert "named twice" in capsys.readouterr().err


def test_evaluate_on_full_kaggle_csv_private_test(trained_run, tmp_path):
    csv = write_fer_csv(tmp_path / "fer2013.csv", fer_rows((2, 2, 3)))
    out = tmp_path / "p.json"
    assert cli.main(["evaluate", str(trained_run / "model.keras"), "--data", str(csv), "--split", "PrivateTest",
                     "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 3


def test_ten_crop_needs_a_cropping_model(trained_run, capsys):
    assert cli.main(["evaluate", str(trained_run / "model.keras"), "--ten-crop"]) == 2
    assert "ten-crop needs a crop smaller" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = write_fer_csv(tmp_path / "bad.csv", [(9, "1 2 3", "Training")])
    assert cli.main(["info", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "bad.csv" in err
    assert cli.main(["evaluate", str(tmp_path / "none.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # refused by the flag's own check, before any work
        cli.main(["train", "--labels", "emotions", "--epochs", "1", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "--labels" in err[0] and "ferplus8" in err[0]
    assert not (tmp_path / "x").exists()


def test_info_lists_sample(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "sample Training: 350 faces" in out and "backend" in out


def test_train_with_crop_and_ten_crop(tmp_path):
    out = tmp_path / "crop"
    assert cli.main(["train", "--epochs", "1", "--input-size", "44", "--tta", "ten_crop", "--labels", "ferm",
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["ten_crop"] is True and results["data"]["label_mode"] == "ferm"
    assert cli.main(["evaluate", str(out / "model.keras"), "--ten-crop", "--json", str(out / "e.json")]) == 0


def test_train_with_cutmix_records_it_and_mixing_refuses_precomputed_teachers_in_one_line(tmp_path, capsys):
    out = tmp_path / "mixed"
    assert cli.main(["train", "--epochs", "1", "--width", "4", "--mix", "cutmix", "--mix-alpha", "0.5",
                     "--out", str(out)]) == 0  # integer labels: made one-hot for the mixing
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["mix"] == "cutmix" and results["config"]["mix_alpha"] == 0.5
    assert 0.0 <= results["test"]["accuracy"] <= 1.0 and results["epochs_run"] == 1
    never = tmp_path / "never"
    assert cli.main(["train", "--epochs", "1", "--mix", "mixup", "--teacher", str(tmp_path / "t.keras"),
                     "--precompute-teachers", "--out", str(never)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mix" in err[0] and "--precompute-teachers" in err[0] and "Fix:" in err[0]
    assert not never.exists()  # refused before the --out folder is made


def test_train_with_fused_batch_norm_records_it_and_older_runs_stay_the_same_run(tmp_path):
    out = tmp_path / "fused"
    assert cli.main(["train", "--epochs", "1", "--width", "4", "--fused-bn", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["fused_batch_norm"] is True and 0.0 <= results["test"]["accuracy"] <= 1.0
    from fer_keras import recipes

    older = recipes.RunConfig().key()
    del older["fused_batch_norm"]  # a run.json written before the setting existed
    assert recipes.RunConfig().same_key(older) and not recipes.RunConfig(fused_batch_norm=True).same_key(older)


def test_train_step_uses_its_recipe(tmp_path):
    out = tmp_path / "s01"
    assert cli.main(["train", "--step", "01_baseline", "--data", "sample", "--epochs", "1", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "baseline_cnn" and results["params"] == 3_623_239
    assert results["config"]["learning_rate"] == 1e-4 and results["config"]["epochs"] == 1
    from fer_keras import flops, models

    assert results["flops"] == flops.count_flops(models.build_model("baseline_cnn"))


def test_explain_writes_an_overlay_png(trained_run, tmp_path, capsys):
    from PIL import Image

    from fer_keras import data, explain

    face = data.load_dataset("sample", usages=["PublicTest"])["PublicTest"].x[0]
    img = tmp_path / "face.png"
    Image.fromarray(face).resize((120, 120)).convert("RGB").save(img)
    out = tmp_path / "overlay.png"
    assert cli.main(["explain", str(img), "--model", str(trained_run / "model.keras"), "--out", str(out)]) == 0
    assert out.is_file() and Image.open(out).size[0] > 100
    assert "wrote" in capsys.readouterr().out
    folder = tmp_path / "maps"  # --out a folder (trailing slash): the PNG goes inside, and the line says so
    assert cli.main(["explain", str(img), "--model", str(trained_run / "model.keras"), "--out", f"{folder}/"]) == 0
    png = folder / f"face_{explain.default_method()}.png"  # grad_cam on TensorFlow, score_cam elsewhere
    assert png.is_file() and str(png) in capsys.readouterr().out
    assert cli.main(["explain", str(img), "--model", str(trained_run / "model.keras"), "--class", "calm"]) == 2
    bad = tmp_path / "doc.jpg"
    bad.write_bytes(b"%PDF-1.4 not an image")
    assert cli.main(["explain", str(bad), "--model", str(trained_run / "model.keras")]) == 2
    err = capsys.readouterr().err
    assert "not an image" in err and "Traceback" not in err


def test_report_for_any_model_in_one_call(trained_run):
    from fer_keras import evaluation, modelfile

    by_path = evaluation.report(trained_run / "model.keras")
    in_memory = evaluation.report(modelfile.load_model(trained_run / "model.keras").keras_model)
    assert by_path["accuracy"] == in_memory["accuracy"] and by_path["n"] == 350
    assert "macro avg" in by_path["text"] and "disgust" in by_path["text"]


def test_export_then_evaluate_the_tflite_file(trained_run, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert cli.main(["export", str(trained_run / "model.keras"), "--mode", "int8", "--calibration", "16",
                     "--out", str(out)]) == 0
    assert out.is_file() and "int8" in capsys.readouterr().out
    assert cli.main(["evaluate", str(out), "--data", "sample", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["n"] == 350


def test_export_records_the_int8_numbers_in_the_run_results(trained_run, tmp_path, capsys):
    results = tmp_path / "r.json"
    results.write_text((trained_run / "results.json").read_text())
    out = tmp_path / "m_int8.tflite"
    assert cli.main(["export", str(trained_run / "model.keras"), "--mode", "int8", "--calibration", "16",
                     "--out", str(out), "--results-json", str(results)]) == 0
    int8 = json.loads(results.read_text())["int8"]
    assert int8["file"] == out.name and int8["kb"] == pytest.approx(out.stat().st_size / 1024)
    assert int8["test_n"] == 350 and 0 <= int8["accuracy"] <= 1 and int8["float_ops"] == 0
    assert int8["latency_single_thread"]["median_ms"] > 0 and "concurrent" in int8 and "command" in int8
    assert json.loads(results.read_text())["test"] == json.loads((trained_run / "results.json").read_text())["test"]
    assert "recorded in" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text('{"model": "x"}')
    for argv, what in ((["--results-json", str(tmp_path / "bad.json")], "not a run results file"),
                       (["--results-json", str(tmp_path / "none.json")], "cannot be read"),
                       (["--mode", "float16", "--results-json", str(results)], "--mode is float16")):
        assert cli.main(["export", str(trained_run / "model.keras"), "--out", str(tmp_path / "x.tflite"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and what in err[0] and "Fix:" in err[0]
    assert not (tmp_path / "x.tflite").exists()


def test_a_distilling_step_without_a_teacher_is_refused(capsys):
    """Without the check, `--step 16_tiny_distilled` would train the student alone under the distilled name."""
    from fer_keras import experiment

    assert cli.main(["train", "--step", "16_tiny_distilled", "--data", "sample", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--teacher MODEL.keras" in err
    with pytest.raises(ValueError, match="none was given"):
        experiment.run_step("16_tiny_distilled", "smoke", runs_dir="/nonexistent")
    experiment.require_teacher("16_tiny_alone", {})  # the student alone needs none


def test_full_runs_refuses_a_distilling_step_without_a_teacher(capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("full_runs",
                                                  Path(__file__).resolve().parents[1] / "scripts" / "full_runs.py")
    full_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(full_runs)
    with pytest.raises(SystemExit):
        full_runs.main(["--data", "x", "--out", "y", "--steps", "16_tiny_alone", "16_tiny_distilled"])
    assert "16_tiny_distilled distil from a teacher" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--epochs", "-1"), ("--batch-size", "0"),
                                         ("--lr", "nan"), ("--lr", "-1e-3"), ("--lr", "inf"), ("--val-fraction", "1.5"),
                                         ("--input-size", "0"), ("--seed", "-1"), ("--budget", "soon"),
                                         ("--ema", "1"), ("--warmup", "1"), ("--label-smoothing", "-0.1"),
                                         ("--model-arg", "pool"), ("--time-limit", "0"),
                                         ("--leave-out-fold", "2/2"), ("--mix-alpha", "0")])
def test_train_refuses_bad_numbers_before_any_work(flag, value, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--out", str(out), f"{flag}={value}"])  # = so that argparse reads "-1" as a value
    assert stop.value.code == 2 and not out.exists()  # refused before any folder or run was made
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err and "Traceback" not in err and ("give" in err or "write" in err or "not" in err)


def test_diverging_run_stops_with_one_line_and_saves_no_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FER_KERAS_RUNS", str(tmp_path / "state"))
    out = tmp_path / "nan"
    code = cli.main(["train", "--epochs", "2", "--lr", "1e30", "--optimizer", "sgd", "--width", "4", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "training diverged" in err and "--lr" in err and "Traceback" not in err
    assert not (out / "model.keras").exists()


@pytest.mark.parametrize("argv, what", [
    (["predict", "x.jpg", "--json", "{dir}"], "is a folder"),
    (["predict", "x.jpg", "--csv", "{file}/rows.csv"], "is a file, so no folder can be made"),
    (["predict", "x.jpg", "--out", "{file}"], "is a file; give a folder"),
    (["train", "--results-json", "{dir}"], "is a folder"),
    (["evaluate", "m.keras", "--json", "{dir}"], "is a folder"),
    (["export", "m.keras", "--out", "{dir}"], "is a folder"),
])
def test_output_paths_are_checked_before_any_work(argv, what, tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    argv = [a.format(dir=tmp_path / "dir", file=tmp_path / "file") for a in argv]
    assert cli.main(argv) == 2  # before the model, the data or the images are even looked at
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --") and what in err[0]


def test_an_output_under_a_folder_that_cannot_be_written_is_refused_before_any_folder_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != tmp_path)  # root may write anywhere
    for create in (False, True):
        with pytest.raises(ValueError, match=f"--out .*: the folder {tmp_path} is not writable. Fix:"):
            cli.check_output(tmp_path / "new" / "run", "--out", "folder", create)
    assert not (tmp_path / "new").exists()


def test_missing_output_folders_are_created_and_ports_and_calibration_are_checked(tmp_path, capsys):
    path = cli.check_output(tmp_path / "new" / "deeper" / "r.json", "--json", "file")
    assert path.parent.is_dir() and not path.exists()
    assert cli.check_output(tmp_path / "runs", "--out", "folder").is_dir()
    for argv in (["demo", "--port", "99999"], ["export", "m.keras", "--calibration", "0"]):
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2
    assert "a port" in capsys.readouterr().err
    lite = tmp_path / "m.tflite"
    lite.write_bytes(b"TFL3")
    assert cli.main(["export", str(lite)]) == 2
    assert "already a .tflite file" in capsys.readouterr().err
