"""Every notebook's recipe as data: the named training configurations (keyword arguments of
`experiment.train_and_evaluate`) and `step_config`, which picks a step's full or smoke version. What a paper
leaves unstated is chosen and said so here. No TensorFlow or Keras import: the CLI reads the step names from here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from fer_keras import config


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run: two runs with equal RunConfigs are the same run (the run
    cache and `--resume` compare them with `==`). What may change between the sessions of one run (verbosity,
    the command line, a session's time limit or devices) is not here: `train_and_evaluate` takes it apart.

    input_size None: the builder's default (48, or 44 crops for S000's models). model_kwargs go to the
    builder (e.g. {"width": 16}). lr_schedule: None, 'cosine' (decay to 0 over all steps), 's000_step' or
    'budget' (warm-up over the first `warmup` fraction, then linear decay to 0: Li et al. 2020).
    tta: how 'test' is scored; models with crops also get 'test_ten_crop'.
    teachers: .keras paths -> knowledge distillation (training.Distiller, alpha / temperature); the
    student `model` is what gets saved and tested. precompute_teachers: the teachers' logits are computed once
    before training (training.teacher_logits) instead of at every step; the same signal for a student that sees
    whole 48-pixel faces; a cropping student gets each face's soft label from the whole face, for every random
    crop of it (as its hard label); refused with class weights. teacher_tta: 'flip' or 'ten_crop': each
    teacher's logits are the mean over its test-time views of the whole face (models.with_tta), the signal of the
    teacher as it is scored; needs precomputed logits or a student that sees whole faces.
    leave_out_fold: 'I/K' trains without fold I of Training's K stratified folds (data.training_folds, seed 0):
    an out-of-fold teacher. With val_fraction > 0 it also holds out the validation slice its student keeps (the
    same fraction and seed, taken from all of Training), so that the student's validation score stays clean.
    teacher_folds: out-of-fold soft labels: teacher i left out fold i of K = the number of teachers, and each
    face's logits come from the one teacher that did not train on it (precomputed).
    budget_minutes: a wall-clock budget for the whole run (loading, training, testing) instead of an epoch
    count: the 'budget' schedule runs over the time left and training stops at the deadline.
    precision: 'auto' (mixed_bfloat16 where the CPU has native bf16, else float32), 'float32',
    'mixed_bfloat16'; the saved model is float32 either way. val_fraction 0: no validation slice.
    cross_label_tests: label sets (e.g. ('ferplus8', 'fer2013')) to score the model on as well, on the same
    test split, classes matched by name (evaluation.cross_label_metrics): results['test_on'][label_set].
    mix: 'mixup' or 'cutmix' mixes every training batch with itself (augment.mix_batch, lambda ~ Beta(mix_alpha,
    mix_alpha)); integer labels become one-hot rows for it. With live teachers the teachers label each mixed batch
    as the student sees it (Beyer et al. 2022's function matching); refused with precomputed teacher logits.
    fused_batch_norm: the BatchNormalization layers train through TensorFlow's fused kernel
    (training.fuse_batch_norm: the same model and file, a faster kernel); other backends ignore it.
    """

    model: str = "small_cnn"
    source: str = "sample"
    label_mode: str = "fer2013"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    augment: str = "basic"
    class_weights: bool = False
    reduce_lr_patience: int | None = None
    early_stopping_patience: int | None = None
    val_fraction: float = 0.1
    test_split: str = "PublicTest"
    seed: int = 0
    input_size: int | None = None
    tta: str = "none"
    out_dir: str = "runs/quickstart"
    weight_decay: float | None = None
    model_kwargs: dict | None = None
    loss: str = "crossentropy"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    lr_schedule: str | None = None
    teachers: list | None = None
    distill_alpha: float = 0.1
    distill_temperature: float = 4.0
    precompute_teachers: bool = False
    teacher_tta: str = "none"
    budget_minutes: float | None = None
    precision: str = "auto"
    label_smoothing: float = 0.0
    ema: float | None = None
    warmup: float = 0.1
    cross_label_tests: tuple | None = field(default=None)
    leave_out_fold: str | None = None
    teacher_folds: bool = False
    mix: str | None = None
    mix_alpha: float = config.MIX_ALPHA
    fused_batch_norm: bool = False

    # results['config'] leaves out what results['data'] and the run's own keys already say.
    _NOT_RECORDED = ("model", "source", "label_mode", "test_split", "out_dir")

    def __post_init__(self):
        if self.mix is not None and self.mix not in config.MIX_CHOICES:
            raise ValueError(f"mix {self.mix!r}: choose one of {config.MIX_CHOICES}")
        if self.mix and self.precompute_teachers:
            raise ValueError("mixing faces (--mix) and precomputed teacher logits (--precompute-teachers) do not "
                             "combine: those soft labels belong to unmixed faces. Fix: drop --precompute-teachers "
                             "(the teachers then label each mixed batch as the student sees it), or drop --mix.")
        if not self.mix_alpha > 0:
            raise ValueError(f"mix_alpha {self.mix_alpha!r}: give a number above 0 (Beta(alpha, alpha))")
        if self.precompute_teachers and self.class_weights:
            raise ValueError("precomputed teacher logits and class weights do not combine; drop one of them.")
        if self.teacher_tta not in config.TTA_CHOICES:
            raise ValueError(f"teacher_tta {self.teacher_tta!r}: choose one of {config.TTA_CHOICES}")
        if self.leave_out_fold is not None:
            config.parse_fold(self.leave_out_fold)
        if self.teacher_folds and self.leave_out_fold is not None:
            raise ValueError("a run either leaves a fold out (a teacher) or distils from out-of-fold teachers, "
                             "not both. Fix: drop --leave-out-fold or --teacher-folds.")
        if self.teacher_folds and (len(self.teachers or ()) < 2 or not self.precompute_teachers):
            raise ValueError("out-of-fold soft labels need at least two teachers (teacher i left out fold i of K = "
                             "the number of teachers) and precomputed teacher logits. Fix: give each fold's teacher "
                             "with --teacher, in fold order, and --precompute-teachers.")

    def key(self) -> dict:
        """Every field as plain JSON values (paths as strings, tuples as lists): the run's identity in run.json."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def same_key(self, saved: dict) -> bool:
        """Whether a run.json's `args` (key() of an earlier session, maybe of an older version) name this run; a
        setting the older file lacks counts as its default, one this version no longer has makes it another run."""
        try:
            return RunConfig(**saved).key() == self.key()
        except TypeError:
            return False

    def record(self) -> dict:
        """results['config']: the training settings as JSON values (distillation's only when distilling)."""
        out = {k: v for k, v in self.key().items() if k not in self._NOT_RECORDED}
        out["class_weights"] = bool(self.class_weights)
        if not self.teachers:
            for k in ("teachers", "distill_alpha", "distill_temperature", "precompute_teachers", "teacher_tta",
                      "teacher_folds"):
                del out[k]
        if not self.cross_label_tests:
            del out["cross_label_tests"]
        if self.leave_out_fold is None:
            del out["leave_out_fold"]
        if not self.mix:
            del out["mix"], out["mix_alpha"]
        return out

    def matches(self, results: dict) -> bool:
        """True when a saved results JSON was made with this configuration (out_dir aside). A setting that an
        older file does not record counts as its default, so a new setting does not invalidate old runs."""
        dat = results.get("data", {})
        if (results.get("model"), dat.get("source"), dat.get("label_mode"), dat.get("test_split")) != (
                self.model, str(self.source), self.label_mode, self.test_split):
            return False
        mine, default = self.record(), RunConfig().key()
        saved = json.loads(json.dumps(results.get("config", {}), default=str))
        return all(saved.get(k, default.get(k)) == v for k, v in mine.items()) and saved.keys() <= mine.keys()


# The S004 path (notebooks 01-07): S004's recipe (Adam 1e-4, batch 64, 100 epochs, rotation/flip/shift
# augmentation), then one idea per step on top of the previous one.
S004_RECIPE = {"optimizer": "adam", "learning_rate": 1e-4, "batch_size": 64, "epochs": 100, "augment": "basic"}
S004_STEPS = {
    "01_baseline": {"model": "baseline_cnn"},
    "02_residual": {"model": "residual_cnn"},
    "03_cbam": {"model": "cbam_cnn"},
    "04_gap": {"model": "gap_cnn"},
    "05_class_weights": {"model": "gap_cnn", "class_weights": True},
    "06_lr_schedule_early_stopping": {"model": "gap_cnn", "class_weights": True, "reduce_lr_patience": 5,
                                      "early_stopping_patience": 15},
    "07_augmentation": {"model": "gap_cnn", "class_weights": True, "reduce_lr_patience": 5,
                        "early_stopping_patience": 15, "augment": "strong"},
}
# The papers' recipes (notebooks 08-10); what a paper leaves unstated is chosen and said so here.
# S000 (lightResNets, VGG19, ResNet18): SGD momentum 0.9, L2 5e-4 (Keras' decoupled decay, equal to L2
# for plain SGD, close with momentum), lr 0.01 then x0.9 every 5 epochs from epoch 80, batch 128, 200
# epochs, rotation/flip/brightness/contrast, 44x44 random crops, ten-crop test.
S000_RECIPE = {"optimizer": "sgd", "learning_rate": 0.01, "weight_decay": 5e-4, "lr_schedule": "s000_step",
               "batch_size": 128, "epochs": 200, "augment": "full", "tta": "ten_crop"}
# S001 (OBSR-Net): AdamW + GC, lr 1e-4, batch 16, 200 epochs; weight decay and augmentation are not
# stated (1e-4, flip/rotation/shift chosen); random init (no ImageNet weights offline).
S001_RECIPE = {"optimizer": "adamw_gc", "learning_rate": 1e-4, "weight_decay": 1e-4, "batch_size": 16,
               "epochs": 200, "augment": "basic"}
# S002 (CA-ResNet): Adam lr 1e-3, weight decay 5e-4 (decoupled here, L2 in PyTorch's Adam), cosine decay,
# batch 128, 300 epochs, early stopping after 10 epochs without a lower validation loss, focal loss
# (alpha 0.25, gamma 2: S002 gives only ranges).
S002_RECIPE = {"optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 5e-4, "lr_schedule": "cosine",
               "batch_size": 128, "epochs": 300, "early_stopping_patience": 10, "loss": "focal",
               "augment": "full"}
PAPER_RUNS = {
    "08_lightresnet_l": S000_RECIPE | {"model": "lightresnet_l"},
    "08_lightresnet_m": S000_RECIPE | {"model": "lightresnet_m"},
    "08_vgg19": S000_RECIPE | {"model": "vgg19"},
    "08_resnet18": S000_RECIPE | {"model": "resnet18"},
    "09_resnet34": S001_RECIPE | {"model": "resnet34", "optimizer": "adamw"},
    "09_bilinear": S001_RECIPE | {"model": "obsr_net", "optimizer": "adamw"},
    "09_bilinear_gc": S001_RECIPE | {"model": "obsr_net"},
    "10_ca_resnet_ce": S002_RECIPE | {"model": "ca_resnet", "loss": "crossentropy"},
    "10_ca_resnet_focal": S002_RECIPE | {"model": "ca_resnet"},
}
# Notebook 14: one model and recipe, four labelings of the same faces: the CPU speed recipe (notebook 17; the
# S004 path's last step was the recipe until measured: S004's full-width models reach one to three epochs in 20
# minutes of this CPU, results/campaign/0*.json, too few to tell four labelings apart).
# Each is also scored on the FER+ majority and the FER2013 labels of the same test split (classes by name).
_BOTH = {"cross_label_tests": ("ferplus8", "fer2013")}
LABEL_RUNS = {
    "14_fer2013": {"label_mode": "fer2013"} | _BOTH,
    "14_ferplus_majority": {"label_mode": "ferplus8"} | _BOTH,
    "14_ferplus_probability": {"label_mode": "ferplus8:probability"} | _BOTH,
    "14_ferm": {"label_mode": "ferm"} | _BOTH,
}
# Notebook 16: the tiny model alone and distilled from teachers (passed as `teachers=[...]` to run_step).
DISTILL_RECIPE = {"model": "tiny_cnn", "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64, "epochs": 60,
                  "augment": "basic", "reduce_lr_patience": 5}
DISTILL_RUNS = {"16_tiny_alone": {}, "16_tiny_distilled": {"distill_alpha": 0.1, "distill_temperature": 4.0}}
# Notebook 17: the CPU speed recipe (benchmarks/README.md, results/speedrun/). A budget schedule (warm-up, then
# linear decay to zero at the deadline); give `--budget 15m` for a wall-clock budget, else it runs `epochs`.
SPEED_RECIPE = {"model": "speed_cnn", "optimizer": "adamw", "learning_rate": 2e-3, "weight_decay": 0.05,
                "batch_size": 128, "label_smoothing": 0.1, "augment": "basic", "tta": "flip", "lr_schedule": "budget",
                "warmup": 0.1, "epochs": 10}
SPEED_RUNS = {"17_speed": {}}
STEPS = S004_STEPS | PAPER_RUNS | LABEL_RUNS | DISTILL_RUNS | SPEED_RUNS
# Smoke mode: same code path on the bundled sample, sizes shrunk (paper models at a quarter width).
SMOKE = {"source": "sample", "epochs": 1, "batch_size": 32}
SMOKE_PAPER = SMOKE | {"model_kwargs": {"width": 16}}
SMOKE_LABELS = SMOKE | {"model": "small_cnn", "epochs": 2, "learning_rate": 1e-3}


# CK+ (notebook 14): S000's CK+ recipe: SGD momentum 0.9, L2 5e-4, lr 0.01 then x0.8 every epoch from
# epoch 20, 60 epochs, batch 32 (the thesis's; its code used 128).
CKPLUS_RECIPE = {"learning_rate": 0.01, "epochs": 60, "batch_size": 32, "weight_decay": 5e-4, "augment": "full",
                 "decay_start": 20, "decay_factor": 0.8}


def step_config(step: str, mode: str | None = None, **overrides) -> dict:
    """Keyword arguments of `train_and_evaluate` for a step (S004_STEPS or PAPER_RUNS) in 'smoke' or
    'full' mode."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; choose one of {', '.join(STEPS)}")
    mode = mode or config.run_mode()
    if step in S004_STEPS:
        kwargs = {"source": "fer2013"} | S004_RECIPE | S004_STEPS[step]
        smoke = SMOKE
    elif step in DISTILL_RUNS:
        kwargs = {"source": "fer2013"} | DISTILL_RECIPE | DISTILL_RUNS[step]
        smoke = SMOKE | {"epochs": 2}
    elif step in SPEED_RUNS:
        kwargs = {"source": "fer2013"} | SPEED_RECIPE | SPEED_RUNS[step]
        smoke = SMOKE | {"epochs": 2, "batch_size": 32}
    elif step in LABEL_RUNS:
        kwargs = {"source": "fer2013"} | SPEED_RECIPE | LABEL_RUNS[step]
        smoke = SMOKE_LABELS
    else:
        kwargs = {"source": "fer2013"} | PAPER_RUNS[step]
        smoke = SMOKE_PAPER
    if mode == "smoke":
        kwargs |= smoke
    return kwargs | overrides


def distils(step: str | None) -> bool:
    """True for a notebook step that trains a student from teachers (16_tiny_distilled)."""
    return "distill_alpha" in DISTILL_RUNS.get(step or "", {})
