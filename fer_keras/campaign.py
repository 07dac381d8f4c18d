"""The full-data campaign on the CPU: every planned run, in order, with what is done and what is left read from
`results/`, and runs that span sessions through `train --resume`.

    python -m fer_keras campaign status            # done / partial / to do, from results/ and the run states
    python -m fer_keras campaign run --minutes 150 # the next runs in order, cut in time to save their state
    python -m fer_keras campaign save              # copy partial runs' states into results/state/ to commit

A run is done when its results file exists. A partial run has a resumable state: in the run-state cache
(config.run_state_dir) or committed under results/state/<name>/ by `save` at the end of a session; `run`
continues it with `train --resume`. Two kinds of run:
- 'budget': the speed recipe's wall-clock budget (warm-up, decay to zero at the deadline). A session cut
  stops it at an epoch end; the resumed run goes on with the schedule where it was.
- 'time': the step's own recipe and schedule, stopped after the epoch that passes `minutes` of training: equal
  compute for every step. A resumed run gets the minutes it has left (notebook 14's labelings).
The S004 path (01-07) runs as 'budget' runs: the step's own model and idea, the budget schedule (S004_BUDGET_FLAGS),
at S004's width and again at width 16 (S004_CPU_WIDTH), where the ideas get enough epochs to be told apart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fer_keras import config, provenance, recipes

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = "state"  # under results/: committed run states
COMMIT_LIMIT_MB = 40  # a state larger than this is not copied into the repository (say so instead)


@dataclass(frozen=True)
class PlannedRun:
    """One campaign run. name: results/<name>.json and runs/<name>/. kind 'budget' or 'time'."""

    name: str
    step: str
    minutes: float
    kind: str = "time"
    seed: int = 0
    flags: tuple[str, ...] = ()
    issue: int = 17
    int8: bool = False  # when done, also export its model to full int8 and record size, accuracy and ms/face
    keep_model: bool = False  # when done, copy its model.keras to results/<name>.keras (to commit)
    # The kind of CPU a series needs (provenance.cpu_class), so that one is not continued on a machine that trains
    # it faster or slower: "amx" (AMX bf16 units; trains in mixed_bfloat16), "avx512_bf16" (AVX512-BF16 without
    # AMX; mixed_bfloat16 too, yet faster than the AMX Xeon at the speed recipe, though little more than half its
    # bf16 matmul rate: results/train_throughput_epyc.json against results/train_throughput_amx.json; the hour-long
    # recipe trained 223 epochs there against the Xeon's 180), "float32" (no native bf16). Elsewhere the run waits.
    # Every run of the plan names one (tests/test_campaign.py); None (any CPU) is for runs outside a series.
    cpu: str | None = None

    def results_file(self, results_dir) -> Path:
        return Path(results_dir) / f"{self.name}.json"

    def inputs(self) -> list[str]:
        """Files the run reads that earlier runs make (its --teacher models)."""
        return [value for flag, value in zip(self.flags, self.flags[1:]) if flag == "--teacher"]

    def out_dir(self, runs_dir="runs") -> Path:
        return Path(runs_dir) / self.name


# The S004 path at one budget each: every step's own model, optimizer, batch, class weights and augmentation,
# with the speed path's budget schedule at a peak rate of 1e-3. S004's constant 1e-4 was measured getting nowhere
# in 20 CPU minutes: one 801 s epoch of the baseline, then 'neutral' for every face
# (results/campaign/01_baseline_s004_lr1e-4.json).
S004_BUDGET_FLAGS = ("--lr", "1e-3")


S004_STEP_NAMES = ("01_baseline", "02_residual", "03_cbam", "04_gap", "05_class_weights",
                   "06_lr_schedule_early_stopping", "07_augmentation")
# S004's models at full width (64) reach about one epoch in 20 minutes of this CPU (measured: 01-04), too few to
# tell the ideas apart; the same designs at width 16 (`width` of the S004 builders: about a sixteenth of the
# FLOPs) get many more.
S004_CPU_WIDTH = 16


def _s004(minutes: float = 20, width: int | None = None) -> list[PlannedRun]:
    """The seven S004 steps at one budget; on the AVX2 EPYC (float32), where both series began."""
    folder, flags = ("campaign", S004_BUDGET_FLAGS) if width is None else \
        (f"campaign/s004_w{width}", S004_BUDGET_FLAGS + ("--model-arg", f"width={width}"))
    return [PlannedRun(f"{folder}/{s}", s, minutes, "budget", flags=flags, cpu="float32") for s in S004_STEP_NAMES]


# The 2-hour speedrun's width. The best width grew with the budget: at 6 minutes width 24 beat 32 and 48
# (results/speedrun/ablation/width*.json: 8, 5 and 3 epochs), at 15 minutes 24 and 32 were level (62.5 % and
# 62.2 %). Compute-optimal scaling (parameters ~ compute^0.5) puts 8x the 15-minute compute at about 1.7x the
# width: 48, about 650 k parameters and 97 MFLOPs a face, some 60 epochs in 2 hours. A choice, not a measurement.
BUDGET120_FLAGS = ("--model-arg", "width=48")

# The long run on a bf16 CPU: width 48 (as the 2-hour runs) with random 40x40 crops and ten-crop testing, the
# augmentation the 2-hour run's over-fitting (81 % train, 66 % validation) and the 6-minute ablation pointed to.
CROP40_FLAGS = ("--input-size", "40", "--tta", "ten_crop")
LONG_AMX_FLAGS = BUDGET120_FLAGS + CROP40_FLAGS
# The long ablation's validation winner (results/speedrun/amx/ablation_long/: random erasing, 67.2 % validation
# against 65.3 % for the hour run's flags at 30 minutes, training accuracy 71.8 % against 81.6 %), trained on all of
# Training (no validation slice: the choice is made) for the 2-hour target's ensemble of two hour-long runs.
ERASE_FLAGS = ("--augment", "basic+erase")
ALL_TRAINING_FLAGS = ("--val-fraction", "0")
LONG_ERASE_FLAGS = LONG_AMX_FLAGS + ERASE_FLAGS
LONG_FINAL_FLAGS = LONG_ERASE_FLAGS + ALL_TRAINING_FLAGS

# Issue 18: the tiny model to ship, the speed recipe at width 18 (92 k parameters, 14 MFLOPs: under issue 18's
# 100 k), an hour each, alone and distilled from the two 2-hour models (their mean soft labels, computed once), same
# seed: the paired comparison. They wait until both teachers are in results/speedrun/.
STUDENT_FLAGS = ("--model-arg", "width=18")
DISTILL_PLAN = {
    "speed_w18_alone": (),
    "speed_w18_from_b120": ("--teacher", "results/speedrun/budget120_seed0.keras",
                            "--teacher", "results/speedrun/budget120_seed1.keras", "--precompute-teachers"),
}

# The same pair on the bf16 CPU, where an hour trains the student about 5x more epochs; its teachers are that
# machine's long runs, each teaching with its ten crops (as it is scored: about 2.7 points above its centre crop).
DISTILL_PLAN_AMX = {
    "speed_w18_alone": (),
    "speed_w18_from_long": ("--teacher", "results/speedrun/amx/budget60_w48_crop40_seed0.keras",
                            "--teacher", "results/speedrun/amx/budget60_w48_crop40_seed1.keras",
                            "--precompute-teachers", "--teacher-tta", "ten_crop"),
    # The second try (notebook 16's guess: over-fit teachers teach little on the faces they trained on): the two
    # hour runs with random erasing, which over-fit far less (the long ablation), as teachers; same student and
    # seed as the pair above. They trained on all of Training, the student's validation slice included.
    "speed_w18_from_erase": ("--teacher", "results/speedrun/amx/budget60_w48_crop40_erase_all_seed0.keras",
                             "--teacher", "results/speedrun/amx/budget60_w48_crop40_erase_all_seed1.keras",
                             "--precompute-teachers", "--teacher-tta", "ten_crop"),
}

# The third try, out-of-fold soft labels (notebook 16's takeaway: a teacher's soft labels are only as honest as the
# faces it has not seen): Training in four stratified folds (data.training_folds), one teacher per fold trained on
# the other three (the long run's final flags, 30 minutes each), and a student whose every face, its validation
# slice's included, is labelled by the one teacher that never saw it. Same student and seed as the pairs above.
OOF_FOLDS = 4
OOF_TEACHERS = [f"distill/amx/oof_teacher{i}of{OOF_FOLDS}" for i in range(OOF_FOLDS)]
DISTILL_PLAN_AMX["speed_w18_from_oof"] = (
    tuple(arg for name in OOF_TEACHERS for arg in ("--teacher", f"results/{name}.keras"))
    + ("--precompute-teachers", "--teacher-tta", "ten_crop", "--teacher-folds"))

# After three distillations that did not beat the student alone on PublicTest (notebook 16): the student alone with
# what took the width-48 model from over-fitting to the 2-hour ensemble, random 40x40 crops, ten-crop testing and
# random erasing (the width-18 student alone ended an hour at 75 % training accuracy against 63 % on its
# validation slice). Same seed, hour and validation slice as the students above, so notebook 16's ship rule applies.
DISTILL_PLAN_AMX["speed_w18_crop40_erase_alone"] = CROP40_FLAGS + ERASE_FLAGS

# The same student on the AVX512-BF16 EPYC (no AMX), the CPU that four sessions in a row drew: its own series, as an
# hour there trains more epochs than on the Xeon. Shipped as `tiny` (validation 64.6 %).
DISTILL_PLAN_EPYC = {"speed_w18_crop40_erase_alone": DISTILL_PLAN_AMX["speed_w18_crop40_erase_alone"]}
# The honest out-of-fold try there. The sweep measured why teachers teach little: the faces they trained on get soft
# labels close to their hard ones. The Xeon's out-of-fold teachers had trained on the student's validation slice,
# so that student's validation score was not clean. Here four teachers each leave out one fold of Training and the
# student's slice (stratified 10 %, seed 0): the long run's recipe with erasing, 30 minutes each. Then the shipped
# tiny's recipe distils from their out-of-fold soft labels: each face's label comes from its whole face, for all its
# random crops. Paired with speed_w18_crop40_erase_alone (same seed, hour and slice). Ship rule, written before it
# trains (notebook 16's): it replaces `tiny` if its validation accuracy beats that student's. Measured (twenty-second
# session): 62.3 % against 64.6 %, so `tiny` stays (PublicTest agrees: 63.3 % against 65.9 % with ten crops).
OOF_VAL_TEACHERS = [f"distill/avx512_bf16/oof_val_teacher{i}of{OOF_FOLDS}" for i in range(OOF_FOLDS)]
DISTILL_PLAN_EPYC["speed_w18_crop40_erase_from_oof_val"] = DISTILL_PLAN_EPYC["speed_w18_crop40_erase_alone"] + (
    tuple(arg for name in OOF_VAL_TEACHERS for arg in ("--teacher", f"results/{name}.keras"))
    + ("--precompute-teachers", "--teacher-tta", "ten_crop", "--teacher-folds"))

# Issue 18's mid-size gap. The shipped `accurate` scores 69.55 % against a 71 % target. The hour-long width-48 runs
# end at about 78 % training accuracy and 69-70 % PublicTest, and ensembles of 2-4 of them reach 70.2-70.4 %
# (results/speedrun/avx512_bf16/ensemble_*). So one model needs more than a new seed. The candidate is the widest
# the recipe allows under 1 M parameters (width 56: 880,551) for two hours on the EPYC, on all of Training. Ship rule,
# written before it trains: it replaces `accurate` if its int8 file (ten crops inside) beats the shipped one's
# PublicTest accuracy. That is one comparison on the test split, and the note must say so. It did (twentieth
# session: results/shipped_accurate.json), so it is the shipped `accurate` now.
ACCURATE_FLAGS = ("--model-arg", "width=56") + CROP40_FLAGS + ERASE_FLAGS + ALL_TRAINING_FLAGS

# Issue 18's mid-size gap (the shipped `accurate`, width 56 for two hours: 84.8 % training accuracy, 69.7 % PublicTest)
# is over-fitting that erasing did not stop, and no regulariser tried on top of erasing beat it. Mixing faces was not
# tried: mixup and CutMix (config.MIX_CHOICES, lambda ~ Beta(1, 1)), each on top of erasing, against erasing alone on
# the EPYC (the Xeon's long_erase is another CPU's 30 minutes), 30 minutes each, chosen on the validation slice.
# Mixup then erasing (faces are mixed in FaceBatches, erased inside the model) is MixCut's recipe (Yu et al. 2024,
# arXiv 2405.10489: on FER+ 0.36 and 0.39 pt above mixup and CutMix alone and 0.59 above Cutout; lambda ~ Beta(1, 1)
# there too). In the plan after the EPYC's students, and notebook 17's ablation set 'mix' (the same runs and files).
# Rule, written before they train: a mixing variant goes on only if its validation accuracy beats long_erase's here;
# the better one then trains as the width-56 two-hour candidate (ACCURATE_FLAGS with its --mix), under the same ship
# rule as before (its int8 file, ten crops inside, must beat the shipped `accurate` on PublicTest). Measured so far
# (twenty-second session): long_erase 66.9 %, long_erase_mixup 66.2 % on the validation slice, so mixup does not go
# on; CutMix waits for its run.
MIX_FOLDER = "speedrun/avx512_bf16/ablation_long"
MIX_ABLATION: dict[str, tuple[str, ...]] = {
    "long_erase": LONG_ERASE_FLAGS,
    "long_erase_mixup": LONG_ERASE_FLAGS + ("--mix", "mixup"),
    "long_erase_cutmix": LONG_ERASE_FLAGS + ("--mix", "cutmix"),
}

# Issue 18's tiny gap, a fifth distillation: function matching (Beyer et al. 2022, "Knowledge distillation: a good
# teacher is patient and consistent"): no ground-truth labels (alpha 0); teacher and student see the same view, a
# live teacher on the student's own random 40x40 crop, mixed by mixup, so the teacher labels mixed faces it never
# trained on; T = 1. The same view means no augmentation inside the student (--augment none): its flips, rotations
# and erasing would give it a view the teacher does not see. So this is the paper's recipe against the shipped
# tiny's (speed_w18_crop40_erase_alone: same width, crops, seed, slice and hour), not one change. Its teacher is the
# erasing run's recipe for an hour here with the validation slice held out (recorded in its file: val_held_out), so
# the student's slice stays clean. The paper's patience (thousands of epochs) is not affordable: an hour, as alone.
# A live teacher costs a forward pass per step, so the hour trains fewer epochs than alone: equal wall clock, the
# kit's measure. Ship rule, written before it trains (notebook 16's): it replaces `tiny` if its validation accuracy
# beats that student's (64.6 %) and its record says teachers_held_out_val: true.
FM_TEACHER = "distill/avx512_bf16/val_teacher_w48"
FM_FLAGS = CROP40_FLAGS + ("--augment", "none", "--teacher", f"results/{FM_TEACHER}.keras", "--mix", "mixup",
                          "--alpha", "0", "--temperature", "1")

# Notebook 17's ablation: the speed recipe with one change per run (variant -> train flags), all at one budget
# and seed. "baseline" is the recipe itself.
ABLATION: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "width24": ("--model-arg", "width=24"),
    "width48": ("--model-arg", "width=48"),
    "batch256": ("--batch-size", "256"),
    "lr4e-3": ("--lr", "4e-3"),
    "no_label_smoothing": ("--label-smoothing", "0"),
    "no_augment": ("--augment", "none"),
    "ema": ("--ema", "0.99"),
    "deeper": ("--model-arg", "convs=[2,2,2]"),
    "head_max": ("--model-arg", "pool=max"),
    "whiten": ("--model-arg", "whiten=true"),
    # random 40x40 crops of the 48x48 faces in training (31 % fewer FLOPs a face, so more epochs in the budget),
    # scored on the ten 40x40 crops (the centre crop alone is recorded too)
    "crop40": CROP40_FLAGS,
}


# The 70 % target's ablation. The hour at width 48 with crops over-fits (seed 0: 88.8 % train against 65.8 %
# validation after 201 epochs, validation flat from about epoch 60 on), so the regularisers are compared on top of
# it, one change each, at 30 minutes and one seed on the bf16 CPU, chosen on the validation slice: random erasing,
# dropout before the logits, the 'strong' augmentation (zoom, brightness), four times the weight decay.
LONG_ABLATION: dict[str, tuple[str, ...]] = {
    "long": LONG_AMX_FLAGS,
    "long_erase": LONG_ERASE_FLAGS,
    "long_dropout": LONG_AMX_FLAGS + ("--model-arg", "dropout=0.3"),
    "long_strong": LONG_AMX_FLAGS + ("--augment", "strong"),
    "long_wd0.2": LONG_AMX_FLAGS + ("--weight-decay", "0.2"),
}
# Random erasing won that ablation (67.2 % validation against 65.3 %) yet still over-fits (71.8 % train at 30
# minutes): the other regularisers, each now added to erasing (one change each against "long_erase", the same
# run as above: same flags, seed and budget, so its results file is shared and it is not run again).
LONG_ERASE_ABLATION: dict[str, tuple[str, ...]] = {
    "long_erase": LONG_ABLATION["long_erase"],
    "long_erase_dropout": LONG_ABLATION["long_erase"] + ("--model-arg", "dropout=0.3"),
    "long_erase_strong": LONG_AMX_FLAGS + ("--augment", "strong+erase"),
    "long_erase_wd0.2": LONG_ABLATION["long_erase"] + ("--weight-decay", "0.2"),
}
# Issue 18's temperature and alpha (Hinton et al.'s T and the hard-label weight; the kit's default is T=4,
# alpha=0.1, the only pair the hour-long students above tried), for the width-18 student at one short budget and
# seed on the EPYC, chosen on the validation slice. The teacher must not have seen that slice (notebook 16's
# lesson), so it is the one hour run that held out the same slice (stratified 10 %, seed 0): the Xeon's
# budget60_w48_crop40_seed0, teaching with its ten crops, its soft labels computed once per run.
SWEEP_TEACHER = ("--teacher", "results/speedrun/amx/budget60_w48_crop40_seed0.keras", "--precompute-teachers",
                 "--teacher-tta", "ten_crop")
DISTILL_SWEEP: dict[str, tuple[str, ...]] = {"alone": STUDENT_FLAGS} | {
    f"t{t:g}_a{a:g}": STUDENT_FLAGS + SWEEP_TEACHER + ("--temperature", f"{t:g}", "--alpha", f"{a:g}")
    for t, a in ((1, 0.1), (2, 0.1), (4, 0.1), (8, 0.1), (4, 0.5))}

# name -> (variants, the CPU they need (PlannedRun.cpu), default budget, default results folder under results/)
ABLATIONS = {"recipe": (ABLATION, "float32", "6m", "speedrun/ablation"),
             "long": (LONG_ABLATION, "amx", "30m", "speedrun/amx/ablation_long"),
             "long_erase": (LONG_ERASE_ABLATION, "amx", "30m", "speedrun/amx/ablation_long"),
             "distill": (DISTILL_SWEEP, "avx512_bf16", "8m", "distill/avx512_bf16/sweep_t_alpha"),
             "mix": (MIX_ABLATION, "avx512_bf16", "30m", MIX_FOLDER)}
ABLATION_ISSUE = {"distill": 18, "mix": 18}  # the issue each set answers; 16 (the speed recipe) unless named here


def ablation_plan(minutes: float, seed: int = 0, variants=None, which: str = "recipe") -> tuple[PlannedRun, ...]:
    """An ablation (ABLATIONS: 'recipe', 'long', 'long_erase', 'distill' or 'mix') as campaign runs named by variant
    (results <results_dir>/<variant>.json), each a 'budget' run of `minutes` of the speed recipe plus its variant's
    flags."""
    table, cpu = ABLATIONS[which][:2]
    return tuple(PlannedRun(v, "17_speed", minutes, "budget", seed, table[v], issue=ABLATION_ISSUE.get(which, 16),
                            cpu=cpu) for v in (variants or table))


# The paper models (notebooks 08-10), one hour each: the AMX series has one of its seven runs (lightResNetl), and
# four sessions in a row drew the EPYC instead. So the same seven hours also form a series on that CPU, lightResNetl
# included, and notebook 08 reports whichever series is complete first (an hour on one CPU is not an hour on another).
PAPER_STEPS = ("08_lightresnet_l", "08_lightresnet_m", "08_resnet18", "08_vgg19", "09_bilinear_gc",
               "10_ca_resnet_ce", "10_ca_resnet_focal")
LIGHTRESNET_LONG_MINUTES = 20 * 60  # issue 17's long lightResNetl run (the last entry of PLAN)
FUSED_BN_FLAGS = ("--fused-bn",)  # training.fuse_batch_norm: only for runs with no partner trained without it
LABELING_STEPS = tuple(recipes.LABEL_RUNS)  # notebook 14's four labelings

# In order. Issue 16's targets first (the speed recipe, two seeds per budget), issue 18's students (their
# teachers are the 2-hour models), then issue 17: the S004 path at one equal budget each, the paper models at one
# equal hour each, notebook 14's four labelings.
# The paper models run as 'budget' runs: each paper's model, optimizer, weight decay, batch, augmentation, loss
# and test-time crops, with its 100-300-epoch schedule squeezed into the hour (warm-up, decay to zero at the
# deadline). Cut at an hour, the papers' own schedules would be scored mid-flight at their peak rate (S000
# holds 0.01 for 80 epochs; the heaviest models get 1-4 epochs an hour here).
_PLAN_IN_ORDER_WRITTEN: tuple[PlannedRun, ...] = tuple(
    [PlannedRun(f"speedrun/budget15_seed{s}", "17_speed", 15, "budget", s, issue=16, cpu="float32") for s in (0, 1)]
    # the 2-hour models are issue 18's teachers and its mid-size ('accurate') candidates: int8 recorded too
    + [PlannedRun(f"speedrun/budget120_seed{s}", "17_speed", 120, "budget", s, BUDGET120_FLAGS, issue=16,
                  keep_model=True, int8=True, cpu="float32") for s in (0, 1)]
    # The same targets on the Intel Xeon with AVX-512, BF16 and AMX, where the recipe trains about 4-5x
    # faster than on the AVX2-only machines above (results/train_throughput_amx.json): its own series.
    + [PlannedRun(f"speedrun/amx/budget15_seed{s}", "17_speed", 15, "budget", s, issue=16, keep_model=True,
                  cpu="amx") for s in (0, 1)]
    # the 6-minute ablation's validation winner on top (random 40x40 crops, ten-crop test), chosen before its test
    + [PlannedRun(f"speedrun/amx/budget15_crop40_seed{s}", "17_speed", 15, "budget", s, CROP40_FLAGS, issue=16,
                  keep_model=True, cpu="amx") for s in (0, 1)]
    + [PlannedRun(f"speedrun/amx/budget60_w48_crop40_seed{s}", "17_speed", 60, "budget", s, LONG_AMX_FLAGS,
                  issue=16, keep_model=True, int8=True, cpu="amx") for s in (0, 1)]
    # seeds 2 and 3: the second pair, after the erase ablation kept erasing alone (none of dropout, strong, wd0.2
    # on top of it beat it on the validation slice), so the 2-hour ensemble's number rests on two pairs
    + [PlannedRun(f"speedrun/amx/budget60_w48_crop40_erase_all_seed{s}", "17_speed", 60, "budget", s,
                  LONG_FINAL_FLAGS, issue=16, keep_model=True, int8=True, cpu="amx") for s in (0, 1, 2, 3)]
    # The 2-hour recipe (two hour-long runs, ensembled) on the CPU issue 16 names (AMD EPYC, AVX512-BF16, no AMX),
    # which trains the speed recipe faster than the AMX Xeon (about 1.24x the epochs in the hour): its own series,
    # the same flags and seeds.
    + [PlannedRun(f"speedrun/avx512_bf16/budget60_w48_crop40_erase_all_seed{s}", "17_speed", 60, "budget", s,
                  LONG_FINAL_FLAGS, issue=16, keep_model=True, int8=True, cpu="avx512_bf16") for s in (0, 1, 2, 3)]
    # and its 15-minute target there: the Xeon's 15-minute winner (random 40x40 crops, ten-crop test), two seeds
    + [PlannedRun(f"speedrun/avx512_bf16/budget15_crop40_seed{s}", "17_speed", 15, "budget", s, CROP40_FLAGS,
                  issue=16, keep_model=True, cpu="avx512_bf16") for s in (0, 1)]
    + [PlannedRun(f"distill/{name}", "17_speed", 60, "budget", flags=STUDENT_FLAGS + teachers, issue=18, int8=True,
                  keep_model=True, cpu="float32") for name, teachers in DISTILL_PLAN.items()]
    + [PlannedRun(name, "17_speed", 30, "budget", 0, LONG_FINAL_FLAGS + ("--leave-out-fold", f"{i}/{OOF_FOLDS}"),
                  issue=18, keep_model=True, cpu="amx") for i, name in enumerate(OOF_TEACHERS)]
    + [PlannedRun(f"distill/amx/{name}", "17_speed", 60, "budget", flags=STUDENT_FLAGS + teachers, issue=18,
                  int8=True, keep_model=True, cpu="amx") for name, teachers in DISTILL_PLAN_AMX.items()]
    + [PlannedRun("speedrun/avx512_bf16/budget120_w56_crop40_erase_all_seed0", "17_speed", 120, "budget", 0,
                  ACCURATE_FLAGS, issue=18, keep_model=True, int8=True, cpu="avx512_bf16")]
    + [PlannedRun(name, "17_speed", 30, "budget", 0, LONG_ERASE_FLAGS + ("--leave-out-fold", f"{i}/{OOF_FOLDS}"),
                  issue=18, keep_model=True, cpu="avx512_bf16")
       for i, name in enumerate(OOF_VAL_TEACHERS)]
    + [PlannedRun(f"distill/avx512_bf16/{name}", "17_speed", 60, "budget", flags=STUDENT_FLAGS + extra, issue=18,
                  int8=True, keep_model=True, cpu="avx512_bf16") for name, extra in DISTILL_PLAN_EPYC.items()]
    # issue 18's mix ablation, the ablation set's runs named under its folder: one results file for both commands
    + [replace(run, name=f"{MIX_FOLDER}/{run.name}") for run in ablation_plan(30, which="mix")]
    # issue 18's fifth distillation: function matching from a teacher that held out the student's slice
    + [PlannedRun(FM_TEACHER, "17_speed", 60, "budget", 0, LONG_ERASE_FLAGS, issue=18, keep_model=True,
                  cpu="avx512_bf16"),
       PlannedRun("distill/avx512_bf16/speed_w18_crop40_fm", "17_speed", 60, "budget",
                  flags=STUDENT_FLAGS + FM_FLAGS, issue=18,
                  int8=True, keep_model=True, cpu="avx512_bf16")]
    + _s004(20)
    + _s004(20, S004_CPU_WIDTH)
    # The width-16 residual step's dense head died at the 1e-3 peak (all 256 fc1 units; notebook 02,
    # results/dead_units_s004_w16.json): the same step at a lower peak rate tests that diagnosis.
    + [PlannedRun(f"campaign/s004_w{S004_CPU_WIDTH}/02_residual_lr3e-4", "02_residual", 20, "budget",
                  flags=("--lr", "3e-4", "--model-arg", f"width={S004_CPU_WIDTH}"), cpu="float32")]
    # The paper models' equal hour (notebook 08's compute question) began on the AMX Xeon (lightResNetl), so the
    # rest wait for one: an hour on another CPU is another amount of compute. The EPYC's series is the same seven
    # hours there (PAPER_STEPS).
    + [PlannedRun(f"campaign/{s}", s, 60, "budget", int8=True, cpu="amx") for s in PAPER_STEPS]
    + [PlannedRun(f"campaign/avx512_bf16/{s}", s, 60, "budget", int8=True, cpu="avx512_bf16") for s in PAPER_STEPS]
    # Notebook 14's four labelings at one budget: the long run's final flags (width 48, random 40x40 crops, erasing,
    # all of Training), 30 minutes each on the bf16 CPU, as notebook 16's out-of-fold teachers.
    + [PlannedRun(f"campaign/amx/{s}", s, 30, "budget", 0, LONG_FINAL_FLAGS, keep_model=True, cpu="amx")
       for s in LABELING_STEPS]
    # The Xeon trained two of the four, then was not lent for eight sessions, so the four also form a series on the
    # EPYC (as the paper models' hours): notebook 14 reads each comparison within one series.
    + [PlannedRun(f"campaign/avx512_bf16/{s}", s, 30, "budget", 0, LONG_FINAL_FLAGS, keep_model=True,
                  cpu="avx512_bf16") for s in LABELING_STEPS]
    # Issue 17's long run, last: lightResNetl toward >= 71 % PublicTest (the thesis: 73.45 % on PrivateTest after 200
    # epochs). Its hour on the EPYC (campaign/avx512_bf16/08_lightresnet_l) trained full epochs of 449-505 s, so
    # LIGHTRESNET_LONG_MINUTES buy about 150 epochs, S000's schedule squeezed into them as in the hour. At about 170
    # minutes a session that is some seven sessions, each cut at its end and resumed from its state (weights and
    # momentum, under COMMIT_LIMIT_MB). It trains with the fused batch-norm kernel (--fused-bn: the same model and
    # file, measured 2.2x lightResNetl's float32 training rate on the Xeon, results/train_throughput_fused_bn_
    # lightresnet_amx.json; twenty-third session). It has no partner at equal compute, so the faster kernel
    # confounds no comparison. The gain is the CPU's: on the AVX2-only EPYC it was 1.17x for lightResNetl and none
    # for speed_cnn (0.90x timed second, 1.04x timed first; results/train_throughput_fused_bn*_avx2*.json, twenty-
    # fourth session). Not yet timed on the AVX-512 EPYC this run needs: time it there (benchmarks/README.md) before the run starts, and if it gains as
    # much as the Xeon, 20 hours buy more than the thesis's 200 epochs; if it loses, drop the flag.
    + [PlannedRun("campaign/avx512_bf16/08_lightresnet_l_long", "08_lightresnet_l", LIGHTRESNET_LONG_MINUTES,
                  "budget", flags=FUSED_BN_FLAGS, int8=True, cpu="avx512_bf16")]
)

# Runs put off behind every other run of the plan (the long run stays last), so that a session that draws their
# CPU trains the open issues' runs first. The Xeon's last two hour-long erasing seeds served issue 16 (the 2-hour
# ensemble's second pair), which is resolved; the Xeon's width-18 student alone with crops and erasing was the
# partner of distillation tries on that CPU, none of which is planned there now (the shipped tiny's recipe and its
# partners trained on the EPYC). Twenty-third session: the Xeon was drawn again after eight sessions of the EPYC,
# and its issue-17 hours (the paper models, notebook 14's labelings) came before these. Twenty-fourth session: the
# AVX2 EPYC (float32) was drawn, the first time since the S004 path; its 2-hour recipe's second seed served issue 16
# too, and the distillation it teaches (the first pair, from precomputed 2-hour teachers) was answered on the bf16
# CPUs (no distilled student beat its partner alone: distill/amx/, distill/avx512_bf16/), so the S004 path's last
# two steps (issue 17) go first there. Kept in the order written (the test reads them so).
DEFERRED = ("speedrun/budget120_seed1",
            "speedrun/amx/budget60_w48_crop40_erase_all_seed2", "speedrun/amx/budget60_w48_crop40_erase_all_seed3",
            "distill/speed_w18_from_b120", "distill/amx/speed_w18_crop40_erase_alone")
PLAN: tuple[PlannedRun, ...] = (
    tuple(r for r in _PLAN_IN_ORDER_WRITTEN[:-1] if r.name not in DEFERRED)
    + tuple(r for r in _PLAN_IN_ORDER_WRITTEN if r.name in DEFERRED)
    + _PLAN_IN_ORDER_WRITTEN[-1:])


def load_state(run: PlannedRun, results_dir, runs_dir="runs") -> tuple[Path | None, dict]:
    """The run's resumable state folder (run.json and state.json, not finished) and its state.json: the cache
    first, then a copy committed under results/state/<name>/. (None, {}) when there is none."""
    for folder in (config.run_state_dir(run.out_dir(runs_dir)), Path(results_dir) / STATE_DIR / run.name):
        saved = _unfinished_state(folder, run)
        if saved is not None:
            return folder, saved
    return None, {}


def _unfinished_state(folder: Path, run: PlannedRun) -> dict | None:
    """state.json of `folder` when it holds an unfinished state left by this planned run, else None."""
    if not ((folder / "run.json").is_file() and (folder / "state.json").is_file()):
        return None
    saved = json.loads((folder / "state.json").read_text())
    if saved.get("finished") or not _same_plan(run, json.loads((folder / "run.json").read_text())):
        return None
    return saved


def _same_plan(run: PlannedRun, record: dict) -> bool:
    """Whether a state was left by this planned run (its kind's budget and its seed), not by an older plan that
    trained into the same folder; such a state is started over, not resumed."""
    args = record.get("args", {})
    budget = run.minutes if run.kind == "budget" else None
    return args.get("budget_minutes") == budget and args.get("seed", 0) == run.seed


def find_state(run: PlannedRun, results_dir, runs_dir="runs") -> Path | None:
    """The run's resumable state folder, or None (see load_state)."""
    return load_state(run, results_dir, runs_dir)[0]


def status(plan=PLAN, results_dir=REPO / "results", runs_dir="runs") -> list[dict]:
    """One row per planned run: 'done' (results file; its accuracy), 'partial' (epochs and minutes so far,
    where the state is) or 'to do'. Every row carries its `run` (the PlannedRun)."""
    rows = []
    for run in plan:
        row = {"name": run.name, "step": run.step, "kind": run.kind, "minutes": run.minutes, "seed": run.seed,
               "issue": run.issue, "run": run}
        path = run.results_file(results_dir)
        results = json.loads(path.read_text()) if path.is_file() else None
        state, saved = load_state(run, results_dir, runs_dir)
        if results is not None and (state is None or complete(run, results, saved)):
            row |= {"status": "done", "accuracy": results["test"]["accuracy"], "epochs": results.get("epochs_run"),
                    "results": str(path)}
        elif state is not None:
            row |= {"status": "partial", "epochs": saved.get("epochs_done"),
                    "train_seconds": saved.get("train_seconds") or 0.0,
                    "trained_min": round((saved.get("train_seconds") or 0) / 60, 1), "state": str(state)}
        else:
            row |= {"status": "to do"}
        if row["status"] != "done":
            row["waits_for"] = [f for f in run.inputs() if not Path(f).is_file()]
            if run.cpu is not None and run.cpu != provenance.cpu_class():
                row["waits_for"].append(f"{NEEDS_CPU[run.cpu]}, as the rest of its series")
        rows.append(row)
    return rows


# PlannedRun.cpu -> the CPU it names (a waiting run's line, a table's hint for a run not measured yet)
NEEDS_CPU = {"amx": "a CPU with AMX (bf16 matrix units)",
             "avx512_bf16": "a CPU with AVX512-BF16 and no AMX",
             "float32": "a CPU without native bf16 (float32)"}


def complete(run: PlannedRun, results: dict, state: dict) -> bool:
    """Whether a run that has results and a resumable state is over: not cut by a time limit, or (a 'time' run)
    cut by its own: its training seconds plus one more epoch would pass its minutes (TimeLimit's rule)."""
    if not results.get("stopped_by_time_limit"):
        return True
    seconds = state.get("train_seconds") or 0
    return run.kind == "time" and seconds + results.get("seconds_per_epoch", 0) > 60 * run.minutes


def command(run: PlannedRun, results_dir, runs_dir="runs", cut_minutes: float | None = None,
            state: Path | None = None, train_seconds: float | None = None) -> list[str]:
    """The train command that starts (or, given its state, resumes) `run`, stopping after `cut_minutes` of
    training at most (a session's end). train_seconds: what the state has trained (read from it if not given)."""
    results = str(run.results_file(results_dir))
    limit = cut_minutes
    if run.kind == "time":  # the run's own compute: what is left of `minutes`
        if train_seconds is None and state is not None:
            train_seconds = json.loads((Path(state) / "state.json").read_text()).get("train_seconds")
        done = (train_seconds or 0) / 60
        left = max(run.minutes - done, 0.01)
        limit = left if cut_minutes is None else min(left, cut_minutes)
    cut = ["--time-limit", f"{limit:.2f}"] if limit is not None else []
    if state is not None:
        return [sys.executable, "-m", "fer_keras", "train", "--resume", str(state), *cut, "--results-json", results]
    budget = ["--budget", f"{run.minutes:g}m"] if run.kind == "budget" else []
    return [sys.executable, "-m", "fer_keras", "train", "--step", run.step, "--data", "fer2013", *budget,
            "--seed", str(run.seed), *run.flags, *cut, "--out", str(run.out_dir(runs_dir)),
            "--results-json", results, "--restart"]


def run_next(minutes: float, plan=PLAN, results_dir=REPO / "results", runs_dir="runs", dry_run=False,
             only: list[str] | None = None, reserve: float = 3.0, redo: bool = False) -> list[dict]:
    """Run the plan's unfinished runs in order within `minutes` of wall clock (each cut `reserve` minutes before
    the end, so its test and save fit; `minutes` may be inf). Returns what was run. A time-limit stop leaves a
    resumable state; `save` copies it into the repository. redo: run done runs again, from the start."""
    start, ran = time.monotonic(), []
    for run in plan:
        if only and run.name not in only:
            continue
        # read when its turn comes, not once at the start: an earlier run of this call may have made its inputs
        row = status([run], results_dir, runs_dir)[0]
        if row["status"] == "done" and not redo:
            print(f"{row['name']}: done, skipped ({row['results']})", flush=True)
            _after_done(run, results_dir, runs_dir, dry_run, ran)
            continue
        missing = row.get("waits_for")
        if missing:
            print(f"{run.name}: waits for {', '.join(missing)}; skipped", flush=True)
            continue
        left = minutes - (time.monotonic() - start) / 60 - reserve
        if left < 2:
            break
        state = Path(row["state"]) if row["status"] == "partial" else None
        cut = left if run.kind == "time" or run.minutes > left else None
        cmd = command(run, results_dir, runs_dir, cut, state, row.get("train_seconds"))
        print(" ".join(["python"] + cmd[1:]), flush=True)
        if dry_run:
            ran.append({"name": run.name, "command": cmd})
            continue
        done = subprocess.run(cmd)  # in this folder: results_dir and runs_dir may be relative to it
        ran.append({"name": run.name, "command": cmd, "returncode": done.returncode})
        if done.returncode != 0:
            print(f"campaign: {run.name} exited {done.returncode}; stopping here", file=sys.stderr)
            break
        if status([run], results_dir, runs_dir)[0]["status"] == "done":
            _after_done(run, results_dir, runs_dir, dry_run, ran)
    return ran


def _after_done(run: PlannedRun, results_dir, runs_dir, dry_run: bool, ran: list) -> None:
    """What a done run still owes: its model copied into results/ (keep_model), its int8 record (int8). A failed
    export is said on stderr; the campaign goes on, and the next `run` tries it again."""
    model, kept = run.out_dir(runs_dir) / "model.keras", Path(results_dir) / f"{run.name}.keras"
    if run.keep_model and not kept.is_file() and model.is_file() and not dry_run:
        shutil.copyfile(model, kept.with_name(kept.name + ".tmp"))
        kept.with_name(kept.name + ".tmp").replace(kept)
        print(f"{run.name}: model kept as {kept}", flush=True)
    if _needs_int8(run, results_dir):
        _record_int8(run, results_dir, runs_dir, dry_run, ran)


def int8_command(run: PlannedRun, results_dir, runs_dir="runs") -> list[str]:
    """The export that adds a done run's int8 record (file size, accuracy on its test split, ms/face on one
    thread) to its results file. Ops without an int8 kernel are let through and counted (float_ops)."""
    return [sys.executable, "-m", "fer_keras", "export", str(run.out_dir(runs_dir) / "model.keras"), "--mode",
            "int8", "--data", "fer2013", "--calibration", "500", "--allow-float",
            "--out", str(run.out_dir(runs_dir) / "model_int8.tflite"), "--results-json", str(run.results_file(results_dir))]


def _needs_int8(run: PlannedRun, results_dir) -> bool:
    path = run.results_file(results_dir)
    return run.int8 and path.is_file() and "int8" not in json.loads(path.read_text())


def _record_int8(run: PlannedRun, results_dir, runs_dir, dry_run: bool, ran: list) -> None:
    """Run int8_command for `run` (print only when dry_run)."""
    cmd = int8_command(run, results_dir, runs_dir)
    print(" ".join(["python"] + cmd[1:]), flush=True)
    if dry_run:
        ran.append({"name": run.name, "command": cmd})
        return
    done = subprocess.run(cmd)
    ran.append({"name": run.name, "command": cmd, "returncode": done.returncode})
    if done.returncode != 0:
        print(f"campaign: the int8 export of {run.name} exited {done.returncode} (its error is above); going on "
              "without its int8 record", file=sys.stderr)


def save_states(plan=PLAN, results_dir=REPO / "results", runs_dir="runs") -> list[str]:
    """Copy every partial run's cached state into results/state/<name>/ (to commit at a session's end), except
    states larger than COMMIT_LIMIT_MB (listed, so the note can say which runs restart on a new machine)."""
    lines = []
    for run in plan:
        cache = config.run_state_dir(run.out_dir(runs_dir))
        saved = _unfinished_state(cache, run)
        results = run.results_file(results_dir)
        if saved is None or (results.is_file() and complete(run, json.loads(results.read_text()), saved)):
            continue
        size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2 ** 20
        if size > COMMIT_LIMIT_MB:
            lines.append(f"{run.name}: state {size:.0f} MB > {COMMIT_LIMIT_MB} MB, not copied (resumes only here)")
            continue
        dest = Path(results_dir) / STATE_DIR / run.name
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(cache, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        lines.append(f"{run.name}: state copied to {dest} ({size:.1f} MB)")
    return lines


def format_status(rows: list[dict]) -> str:
    """The status table as text: one line per run, then the totals."""
    out = [f"{'run':36} {'kind':6} {'min':>5} {'status':8} detail"]
    for r in rows:
        detail = {"done": lambda: f"accuracy {r['accuracy']:.4f}, {r['epochs']} epochs",
                  "partial": lambda: f"{r['epochs']} epochs, {r['trained_min']} min trained; {r['state']}",
                  "to do": lambda: "waits for " + ", ".join(r["waits_for"]) if r.get("waits_for") else ""
                  }[r["status"]]()
        out.append(f"{r['name']:36} {r['kind']:6} {r['minutes']:5g} {r['status']:8} {detail}")
    left = sum(r["minutes"] - r.get("trained_min", 0) for r in rows if r["status"] != "done")
    done = sum(r["status"] == "done" for r in rows)
    out.append(f"{done}/{len(rows)} done; about {left / 60:.1f} h of training left")
    return "\n".join(out)
