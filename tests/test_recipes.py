"""recipes: every named recipe is a valid RunConfig, and RunConfig is what decides 'the same run'."""

import dataclasses
import json
from pathlib import Path

import pytest

from fer_keras import recipes
from fer_keras.recipes import RunConfig

# run.json "args" as written before RunConfig existed (a campaign run's, verbatim): a run interrupted under the
# old code must still resume under the new one, so its key must be unchanged.
OLD_RUN_ARGS = json.loads("""{"model": "cbam_cnn", "source": "fer2013", "label_mode": "fer2013", "epochs": 100,
 "batch_size": 64, "learning_rate": 0.001, "optimizer": "adam", "augment": "basic", "class_weights": false,
 "reduce_lr_patience": null, "early_stopping_patience": null, "val_fraction": 0.1, "test_split": "PublicTest",
 "seed": 0, "input_size": null, "tta": "none", "out_dir": "runs/campaign/03_cbam", "weight_decay": null,
 "model_kwargs": null, "loss": "crossentropy", "focal_alpha": 0.25, "focal_gamma": 2.0, "lr_schedule": null,
 "teachers": null, "distill_alpha": 0.1, "distill_temperature": 4.0, "budget_minutes": 20.0, "precision": "auto",
 "label_smoothing": 0.0, "ema": null, "warmup": 0.1, "cross_label_tests": null}""")


@pytest.mark.parametrize("mode", ["smoke", "full"])
def test_every_recipe_is_a_valid_run_config(mode):
    for step in recipes.STEPS:
        run = RunConfig(**recipes.step_config(step, mode))
        assert run.model == recipes.step_config(step, mode).get("model", "small_cnn")
        json.dumps(run.key())  # plain JSON


def test_a_misspelt_setting_is_refused():
    with pytest.raises(TypeError, match="epoch"):
        RunConfig(epoch=3)


def test_run_config_is_frozen_and_compares_by_value():
    a, b = RunConfig(model="tiny_cnn", epochs=3), RunConfig(model="tiny_cnn", epochs=3)
    assert a == b and a != dataclasses.replace(a, epochs=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.epochs = 5


def test_an_old_run_file_keeps_its_key():
    key = RunConfig(**OLD_RUN_ARGS).key()  # every old setting as it was; later settings at their defaults
    assert {k: key[k] for k in OLD_RUN_ARGS} == OLD_RUN_ARGS and RunConfig(**OLD_RUN_ARGS).same_key(OLD_RUN_ARGS)
    assert set(key) - set(OLD_RUN_ARGS) == {"precompute_teachers", "teacher_tta", "leave_out_fold", "teacher_folds",
                                            "mix", "mix_alpha", "fused_batch_norm"}
    assert key["mix"] is None and key["mix_alpha"] == 1.0 and key["fused_batch_norm"] is False
    assert key["precompute_teachers"] is False and key["teacher_tta"] == "none"
    assert key["leave_out_fold"] is None and key["teacher_folds"] is False
    assert RunConfig(out_dir=Path("runs/x")).key()["out_dir"] == "runs/x"  # a Path and its string: one run
    assert RunConfig(cross_label_tests=("fer2013",)).key()["cross_label_tests"] == ["fer2013"]


def test_a_run_file_from_an_older_version_still_names_its_run():
    run = RunConfig(**OLD_RUN_ARGS)
    assert run.same_key(OLD_RUN_ARGS)
    older = {k: v for k, v in OLD_RUN_ARGS.items() if k != "warmup"}  # written before `warmup` existed
    assert run.same_key(older) and not dataclasses.replace(run, warmup=0.2).same_key(older)
    assert not run.same_key(OLD_RUN_ARGS | {"retired_setting": 1}) and not run.same_key(OLD_RUN_ARGS | {"seed": 1})


def test_record_is_the_results_config():
    rec = RunConfig(class_weights=1).record()
    assert rec["class_weights"] is True
    assert not {"model", "source", "label_mode", "test_split", "out_dir"} & set(rec)  # in results['data']
    assert not {"teachers", "distill_alpha", "distill_temperature", "cross_label_tests"} & set(rec)
    taught = RunConfig(teachers=[Path("t.keras")], distill_temperature=2.0).record()
    assert taught["teachers"] == ["t.keras"] and taught["distill_temperature"] == 2.0
    assert not {"mix", "mix_alpha"} & set(rec)  # recorded only when mixing, as the results before it
    mixed = RunConfig(mix="mixup", mix_alpha=0.2).record()
    assert (mixed["mix"], mixed["mix_alpha"]) == ("mixup", 0.2)


@pytest.mark.parametrize("settings, what", [({"mix": "blend"}, "choose one of"), ({"mix_alpha": 0.0}, "above 0"),
                                            ({"mix": "cutmix", "teachers": ["t.keras"], "precompute_teachers": True},
                                             "do not combine")])
def test_mixing_settings_are_checked(settings, what):
    with pytest.raises(ValueError, match=what):
        RunConfig(**settings)
    assert RunConfig(mix="mixup", teachers=["t.keras"]).record()["mix"] == "mixup"  # live teachers label the mixes


def results_of(run: RunConfig, config: dict | None = None) -> dict:
    return {"model": run.model, "data": {"source": run.source, "label_mode": run.label_mode,
                                         "test_split": run.test_split},
            "config": run.record() if config is None else config}


def test_matches_a_saved_run():
    run = RunConfig(**recipes.step_config("05_class_weights", "smoke"))
    assert run.matches(results_of(run))
    assert not dataclasses.replace(run, epochs=2).matches(results_of(run))
    assert not dataclasses.replace(run, model="tiny_cnn").matches(results_of(run))
    assert not dataclasses.replace(run, label_mode="ferm").matches(results_of(run))
    assert dataclasses.replace(run, out_dir="elsewhere").matches(results_of(run))  # where it is kept: not the run


def test_an_older_file_without_a_new_setting_matches_only_at_its_default():
    run = RunConfig(**recipes.step_config("01_baseline", "smoke"))
    older = {k: v for k, v in run.record().items() if k != "warmup"}
    assert run.matches(results_of(run, older))
    assert not dataclasses.replace(run, warmup=0.3).matches(results_of(run, older))
    assert not run.matches(results_of(run, older | {"retired_setting": 1}))
