"""reporting: numbers in the README and the notebooks come from results files; a stale rendering is caught."""

import json
import re

import numpy as np
import pytest

from fer_keras import evaluation, reporting

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _run(folder, name, y_true, y_pred, model="gap_cnn", minutes=20.0):
    """A results file as train_and_evaluate writes it (the fields the renderers read)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    metrics = evaluation.classification_metrics(y_true, np.eye(7)[y_pred], CLASSES)
    metrics |= {"y_true": evaluation.encode_classes(y_true), "y_pred": evaluation.encode_classes(y_pred)}
    r = {"run": name, "model": model, "params": 1000, "trainable_params": 990, "flops": 2e6, "epochs_run": 4,
         "train_seconds": 60 * minutes, "test": metrics,
         "data": {"test_split": "PublicTest", "test_n": len(y_true)},
         "provenance": {"hardware": {"cpu_count": 2}}}
    path = folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    return r


@pytest.fixture()
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 200)
    before = np.where(rng.random(200) < 0.5, y, (y + 1) % 7)  # about half right
    after = np.where(rng.random(200) < 0.8, y, (y + 1) % 7)  # about 80 % right
    a = _run(tmp_path, "campaign/a", y, before)
    b = _run(tmp_path, "campaign/b", y, after, model="lightresnet_l")
    return tmp_path, a, b, evaluation.paired_test(y, before, after)


def test_classes_encode_as_digits_and_back():
    y = np.array([0, 6, 3, 7, 1])
    assert evaluation.encode_classes(y) == "06371"
    np.testing.assert_array_equal(evaluation.decode_classes("06371"), y)
    with pytest.raises(ValueError):
        evaluation.encode_classes([10])


def test_paired_test_from_files_equals_the_test_on_arrays_and_refuses_other_faces(two_runs):
    _, a, b, direct = two_runs
    assert evaluation.paired_test_from_metrics(a["test"], b["test"]) == direct
    other = dict(b["test"], y_true="1" * 200)
    assert evaluation.paired_test_from_metrics(a["test"], other) is None  # not the same faces
    assert evaluation.paired_test_from_metrics({"accuracy": 0.5}, b["test"]) is None  # an old file, no predictions


def test_table_has_each_run_with_mcnemar_against_the_row_above_and_names_runs_not_measured(two_runs):
    folder, a, b, direct = two_runs
    text = reporting.render_block("table campaign/a campaign/b campaign/c", folder)
    rows = text.splitlines()
    assert rows[2].startswith("| `campaign/a` | gap_cnn | 990 |") and rows[2].count("|") == rows[0].count("|")
    assert f"{100 * a['test']['accuracy']:.2f} %" in rows[2] and f"{100 * b['test']['accuracy']:.2f} %" in rows[3]
    assert f"{direct['delta_pt']:+.2f} pt, p = {direct['p_value']:.2g}" in rows[3]
    assert "73.45 %" in rows[3]  # the paper's number for lightresnet_l
    assert "not measured yet" in rows[4] and "--only campaign/c" in rows[4]
    assert "(n = 200)" in text and "`results/campaign/b.json`" in text


def test_a_run_not_measured_names_the_kind_of_cpu_its_series_waits_for():
    hint = reporting._measure_hint("campaign/08_resnet18")  # the paper models' hour began on the AMX Xeon
    assert hint == "`python -m fer_keras campaign run --minutes 70 --only campaign/08_resnet18`, on a CPU with AMX " \
                   "(bf16 matrix units)"
    assert reporting._measure_hint("campaign/c") == "`python -m fer_keras campaign run --minutes 30 --only campaign/c`"


def test_table_adds_tta_and_int8_columns_when_a_run_has_them(two_runs):
    folder, a, b, _ = two_runs
    b |= {"test_single_crop": a["test"], "config": {"tta": "ten_crop"},
          "int8": {"kb": 2711.4, "accuracy": 0.6123, "float_ops": 0, "latency_single_thread": {"median_ms": 1.234}}}
    (folder / "campaign" / "b.json").write_text(json.dumps(b))
    rows = reporting.render_block("table campaign/a campaign/b", folder).splitlines()
    assert "accuracy with TTA" in rows[0] and "int8 KB" in rows[0] and "ms/face (int8, 1 thread)" in rows[0]
    assert all(r.count("|") == rows[0].count("|") for r in rows[1:4])
    assert f"| {100 * a['test']['accuracy']:.2f} % |" in rows[3]  # single crop in the accuracy column
    assert f"{100 * b['test']['accuracy']:.2f} % (ten_crop) | 2,711 | 61.23 % | 1.23 |" in rows[3]
    assert "| – | – | – | – |" in rows[2]  # the run without TTA or int8 numbers


def test_change_sentence_gives_both_accuracies_the_gain_and_p(two_runs):
    folder, a, b, direct = two_runs
    text = reporting.render_block("change campaign/a campaign/b", folder)
    assert f"from {100 * a['test']['accuracy']:.2f} % to {100 * b['test']['accuracy']:.2f} %" in text
    assert f"({direct['delta_pt']:+.2f} pt; exact McNemar p = {direct['p_value']:.2g} on n = 200 faces)" in text
    assert "4 ep, 20 min against 4 ep, 20 min of training on 2 CPU cores" in text
    missing = reporting.render_block("change campaign/a campaign/zz", folder)
    assert missing.startswith("Not measured yet (`campaign/zz`)") and "--only campaign/zz" in missing


def test_markdown_blocks_are_re_rendered_and_bad_directives_are_one_clear_error(two_runs):
    folder, a, _, _ = two_runs
    md = ("Intro.\n\n<!-- results:table campaign/a -->\n| stale | 99.99 % |\n<!-- /results -->\n\nAfter.\n")
    out = reporting.render_markdown(md, folder)
    assert "99.99" not in out and f"{100 * a['test']['accuracy']:.2f} %" in out
    assert out.startswith("Intro.\n\n<!-- results:table campaign/a -->\n|") and out.endswith("<!-- /results -->\n\nAfter.\n")
    assert reporting.render_markdown(out, folder) == out  # rendering twice changes nothing
    with pytest.raises(ValueError, match="write 'table RUN...', 'labels RUN...'"):
        reporting.render_markdown("<!-- results:plot x -->\n<!-- /results -->", folder)


def test_labels_table_scores_each_labeling_on_ferplus_and_fer2013(two_runs):
    folder, a, _, _ = two_runs
    a["data"] |= {"label_mode": "ferplus8", "train_n": 25045}
    a["test_on"] = {"ferplus8": {"accuracy": 0.8123, "n": 3573}, "fer2013": {"accuracy": 0.6011, "n": 3589}}
    (folder / "campaign" / "a.json").write_text(json.dumps(a))
    rows = reporting.render_block("labels campaign/a campaign/none", folder).splitlines()
    assert rows[2].startswith("| `campaign/a` | ferplus8 | 25,045 | 4 ep, 20 min |")
    assert "81.23 % (n = 3,573) | 60.11 % (n = 3,589) | – |" in rows[2] and "not measured yet" in rows[3]
    assert all(r.count("|") == rows[0].count("|") for r in rows[1:4])
    # a run with test-time views: its one-view score sits beside the (one-view) cross-label scores, TTA at the end
    a |= {"test_single_crop": {"accuracy": 0.8011, "n": 3573}, "test": {"accuracy": 0.8234, "n": 3573},
          "config": {"tta": "ten_crop"}}
    (folder / "campaign" / "a.json").write_text(json.dumps(a))
    row = reporting.render_block("labels campaign/a", folder).splitlines()[2]
    assert row.endswith("| 80.11 % (n = 3,573) | 81.23 % (n = 3,573) | 60.11 % (n = 3,589) | 82.34 % (ten_crop) |")


def test_inline_values_render_one_number_from_a_file_and_name_a_wrong_path(tmp_path):
    (tmp_path / "compress.json").write_text(json.dumps({"exports": {"tflite int8": {"accuracy": 0.5879, "kb": 301.2}},
                                                        "gap": -0.11, "sizes": [308428], "ms/face": {"a / b": 0.25}}))
    md = ("int8 <!-- results:value pct compress exports::tflite int8::accuracy -->old<!-- /results --> "
          "(<!-- results:value pt compress gap -->x<!-- /results -->), "
          "<!-- results:value kb compress sizes::0 --><!-- /results -->.")
    out = reporting.render_markdown(md, tmp_path)
    assert re.findall(r"-->([^<]*)<!-- /results -->", out) == ["58.79 %", "−0.11 pt", "301 KB"]
    assert out.startswith("int8 <!-- results:value pct") and out.endswith("<!-- /results -->.")
    assert reporting.render_block("value f2 compress ms/face::a / b", tmp_path) == "0.25"  # slashes in keys
    with pytest.raises(ValueError, match="has no 'exports::tflite fp16::accuracy'"):
        reporting.render_block("value pct compress exports::tflite fp16::accuracy", tmp_path)
    with pytest.raises(ValueError, match="FORMAT one of"):
        reporting.render_block("value percent compress gap", tmp_path)


def test_ckplus_row_says_what_starting_from_fer2013_bought():
    def cv(mean, std, weights, leaked=0):
        return {"k": 10, "model": "speed_cnn", "model_kwargs": None, "config": {"epochs": 60},
                "mean_accuracy": mean, "std_accuracy": std, "leaked_test_rows": [leaked] * 10,
                "start_from": {"init_from": "runs/fer/model.keras", "weights": weights}}

    r = {"subject": cv(0.95, 0.02, "fine-tuned"), "leaky": cv(0.97, 0.01, "fine-tuned", 60),
         "scratch": cv(0.85, 0.05, "re-initialised"), "gap_points": 2.0, "transfer_gain_points": 10.0}
    line, = reporting.other_rows({"ckplus_cv_finetuned": r})
    assert "fine-tuned from `runs/fer/model.keras`" in line and "subject-independent 95.00 % ± 2.00" in line
    assert "from scratch: 85.00 % ± 5.00" in line and "buys +10.00 points" in line and "600 leaked" in line
    old = {"subject": cv(0.8481, 0.0496, "random init"), "leaky": cv(0.8646, 0.0384, "random init", 62),
           "gap_points": 1.65}
    del old["subject"]["start_from"], old["leaky"]["start_from"]  # files from before fine-tuning existed
    line, = reporting.other_rows({"ckplus_cv_small_cnn_w16": old})
    assert "84.81 % ± 4.96" in line and "scratch" not in line and "fine-tuned" not in line
    partial = {"subject": r["subject"], "scratch": r["scratch"], "transfer_gain_points": 10.0, "pending": ["leaky"]}
    line, = reporting.other_rows({"ckplus_cv_finetuned": partial})  # a session ended between schemes
    assert "buys +10.00 points" in line and "leaky per-class" not in line and "not run yet: leaky" in line


def test_readme_row_of_a_budget_run_says_its_wall_time_or_that_it_spanned_sessions(two_runs):
    _, a, _, _ = two_runs
    hw = {"cpu_count": 2, "cpu": {"family": "25", "model": "1", "flags": ["avx2"]}}
    base = a | {"config": {"budget_minutes": 20}, "wall_seconds": 1170.0, "flops": 2e6,
                "data": a["data"] | {"source": "fer2013", "label_mode": "fer2013"}, "provenance": {"hardware": hw}}
    row = reporting.training_rows({"one": base})[2]
    assert "20 min budget: 4 ep, 19.5 min wall" in row and "family 25 model 1, avx2" in row
    resumed = reporting.training_rows({"two": base | {"resumed_from_epoch": 2, "wall_seconds": 360.0}})[2]
    assert "20 min budget: 4 ep, 20.0 min training over sessions (resumed at epoch 2)" in resumed


def test_an_ensemble_file_renders_its_accuracy_and_each_members():
    r = {"members": {"a/t1.keras": {"accuracy": 0.66}, "t2.keras": {"accuracy": 0.655}}, "accuracy": 0.68,
         "macro_f1": 0.61, "split": "PublicTest", "n": 3589, "tta": "flip", "ensemble": "mean of the members' logits"}
    line, = reporting.other_rows({"distill/teachers": r})
    assert line.startswith("- **Ensemble of 2** on PublicTest (n=3589, flip TTA; mean of the members' logits): 68.00 %")
    assert "`t1.keras` 66.00 %; `t2.keras` 65.50 %" in line and "`results/distill/teachers.json`" in line
    costed, = reporting.other_rows({"e": r | {"cost": {"total_minutes": 119.04}}})
    assert "65.50 %; 119.0 min from scratch (the members' runs and this test) (`results/e.json`)" in costed


def test_the_input_pipeline_file_renders_both_speeds_and_their_ratio():
    r = {"images": 4096, "batch_size": 64, "legacy_imagedatagenerator_images_per_s": 3457.5,
         "kit_pydataset_inmodel_augmentation_images_per_s": 15908.7, "speedup": 4.6, "augmentations": "flip"}
    line, = reporting.other_rows({"input_pipeline_benchmark": r})
    assert "15,909 faces/s, `ImageDataGenerator.flow` 3,458 faces/s, 4.6×" in line
