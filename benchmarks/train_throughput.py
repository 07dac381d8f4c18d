"""Training throughput on this machine: faces/s and achieved GFLOP/s of the kit's models, across backend x
precision x batch size x thread settings, against the CPU's own matmul peak measured in the same run.

    FER_KERAS_CONCURRENT=nothing python benchmarks/train_throughput.py --json results/train_throughput.json

Each backend runs in its own process (KERAS_BACKEND is read at import). Every setting trains the model with
`fit` on real faces (the bundled sample, tiled), the kit's input path (training.FaceBatches) and its in-model
augmentation, in one `fit` call whose first epoch is the warm-up; the figure is the median of the `--repeats`
epochs of `--steps` steps after it. Settings 'backend:threads:glibc' run with glibc's own malloc settings
(FER_KERAS_MALLOC_TOP_PAD=0) instead of the kit's, to measure what config.tune_allocator buys.
Achieved GFLOP/s counts training as 3x the forward FLOPs (flops.count_flops, 2 FLOPs per multiply-add).
A model may be named with a timing variant, 'lightresnet_l+no_depthwise' or '+dw_float32' (VARIANTS): one layer
type taken out or computed in float32, to see what it costs.
Timings need the machine to themselves: run nothing beside it, and say so in FER_KERAS_CONCURRENT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = ("speed_cnn", "tiny_cnn", "small_cnn")
PRECISIONS = ("float32", "mixed_bfloat16")


def matmul_peak(precision: str, n: int = 2048, reps: int = 8) -> float:
    """GFLOP/s of an n x n matmul in float32 or bfloat16 on this backend (median of `reps`)."""
    import keras
    import numpy as np

    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    a = keras.ops.convert_to_tensor(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
    mm = keras.ops.matmul
    if keras.backend.backend() == "jax":
        import jax

        mm = jax.jit(mm)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        mm = tf.function(mm)
    keras.ops.convert_to_numpy(mm(a, a))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        keras.ops.convert_to_numpy(mm(a, a))
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _dw_float32(layer):
    """Variant '+dw_float32': a depthwise convolution computed in float32 inside a mixed_bfloat16 model."""
    return layer.__class__.from_config(layer.get_config() | {"dtype": "float32"})


def _no_depthwise(layer):
    """Variant '+no_depthwise' (timing only, not a model to train): a depthwise convolution replaced by nothing
    (identity, or a 2x subsample where it is strided), so the rate shows what the depthwise layers cost."""
    import keras

    if layer.strides == (1, 1):
        return keras.layers.Identity(name=layer.name)
    return keras.layers.MaxPooling2D(1, strides=layer.strides, padding="same", name=layer.name)


# name -> what each DepthwiseConv2D becomes; every other layer is cloned as it is
VARIANTS = {"dw_float32": _dw_float32, "no_depthwise": _no_depthwise}


def _fused_bn(net):
    """Training variant '+fused_bn': every BatchNormalization trains through TensorFlow's fused kernel
    (training.fuse_batch_norm); the same model and weights, another kernel."""
    from fer_keras import training

    training.fuse_batch_norm(net)


# name -> what is done to the built model, in place, instead of a layer change
TRAINING_VARIANTS = {"fused_bn": _fused_bn}


def build_variant(spec: str, **kwargs):
    """A kit model from 'name' or 'name+variant' (VARIANTS: one layer type changed, to see what it costs;
    TRAINING_VARIANTS: the same model trained through other kernels)."""
    import keras

    from fer_keras import models

    name, _, variant = spec.partition("+")
    if variant and variant not in VARIANTS | TRAINING_VARIANTS:
        raise ValueError(f"model {spec!r}: variant {variant!r}; choose one of "
                         f"{', '.join(VARIANTS | TRAINING_VARIANTS)}")
    net = models.build_model(name, **kwargs)
    if variant in TRAINING_VARIANTS:
        TRAINING_VARIANTS[variant](net)
        return net
    if not variant:
        return net
    replace = VARIANTS[variant]
    return keras.models.clone_model(net, clone_function=lambda layer: replace(layer) if isinstance(
        layer, keras.layers.DepthwiseConv2D) else layer.__class__.from_config(layer.get_config()))


def train_rate(model_name: str, precision: str, batch_size: int, steps: int, repeats: int) -> dict:
    """Median faces/s of `fit` over `repeats` epochs of `steps` steps (after a warm-up epoch). model_name may
    name a variant ('lightresnet_l+dw_float32', see VARIANTS)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t)

    import numpy as np

    from fer_keras import data, flops, training

    keras.utils.set_random_seed(0)
    s = data.load_sample(["Training"])["Training"]
    n = steps * batch_size
    reps = -(-n // len(s.y))
    x, y = np.tile(s.x, (reps, 1, 1))[:n], np.tile(s.y, reps)[:n]
    with training.dtype_policy(precision):
        net = build_variant(model_name, augment="basic", seed=0)
    training.compile_model(net, 1e-3, "adamw", weight_decay=0.05)
    batches = training.FaceBatches(x, y, batch_size, shuffle=True, crop=net.input_shape[1])
    clock = EpochClock()
    # One fit call, as in real training: its first epoch (tracing, pipeline start-up) is the warm-up. Separate
    # short fit calls would time each call's start-up, not training (measured: a constant ~5 s per call).
    net.fit(batches, epochs=repeats + 1, steps_per_epoch=steps, verbose=0, callbacks=[clock], shuffle=False)
    rates = [n / s for s in clock.seconds[1:]]
    with training.dtype_policy("float32"):
        mflops = flops.count_flops(build_variant(model_name, augment="none")) / 1e6
    rate = statistics.median(rates)
    return {"model": model_name, "precision": precision, "batch_size": batch_size, "faces_per_s": round(rate, 1),
            "faces_per_s_runs": [round(r, 1) for r in rates], "forward_mflops": round(mflops, 1),
            "achieved_gflops": round(3 * mflops * rate / 1e3, 1)}


def set_threads(threads: str) -> None:
    """'default', or 'inter1' (TensorFlow: one inter-op thread, so the two cores go to each op's own threads)."""
    if threads == "inter1":
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(1)


def run_backend(args) -> dict:
    """One backend's measurements (this process already has KERAS_BACKEND set). bf16 is measured for
    `--bf16-models` at the first batch size only: on a CPU without native bf16 it is several times slower, and
    one model shows that."""
    import keras

    from fer_keras import config  # importing fer_keras sets the allocator, before the first tensor

    set_threads(args.threads)
    out = {"backend": keras.backend.backend(), "threads": args.threads, **config.ALLOCATOR, "runs": []}
    grid = [(m, "float32", bs) for m in args.models for bs in args.batch_sizes]
    grid += [(m, "mixed_bfloat16", args.batch_sizes[0]) for m in args.bf16_models if args.threads == "default"]
    for model_name, precision, bs in grid:
        r = train_rate(model_name, precision, bs, args.steps, args.repeats)
        print(json.dumps(r), file=sys.stderr, flush=True)
        out["runs"].append(r)
    # The matmul peak comes last: its large buffers change what malloc keeps, and timed first they made the
    # training after them ~1.4x faster under glibc's defaults (benchmarks/README.md, "The allocator").
    out["matmul_gflops"] = {p: round(matmul_peak(p), 1) for p in PRECISIONS}
    for r in out["runs"]:
        r["fraction_of_matmul_peak"] = round(r["achieved_gflops"] / out["matmul_gflops"][r["precision"]], 3)
    add_speedups(out["runs"])
    return out


def add_speedups(runs: list[dict]) -> None:
    """A variant's rate over its plain model's at the same precision and batch size, measured in the same
    process ('speedup_vs_plain': 1.25 means a quarter faster), where both were timed."""
    plain = {(r["model"], r["precision"], r["batch_size"]): r["faces_per_s"] for r in runs}
    for r in runs:
        name, _, variant = r["model"].partition("+")
        base = plain.get((name, r["precision"], r["batch_size"]))
        if variant and base:
            r["speedup_vs_plain"] = round(r["faces_per_s"] / base, 3)


# backend, threads, allocator, models, batch sizes: the full grid on TensorFlow's defaults; the thread setting,
# glibc's own allocator settings and JAX on fewer cells (each cell costs ~30 s of a 2-core machine held to itself).
# allocator 'kit': fer_keras's M_TOP_PAD (config.tune_allocator); 'glibc': glibc's defaults
# (FER_KERAS_MALLOC_TOP_PAD=0), to show what that setting buys, side by side in the same run.
SETTINGS = (("tensorflow", "default", "kit", MODELS, (128, 256)),
            ("tensorflow", "default", "glibc", ("speed_cnn", "small_cnn"), (128,)),
            ("tensorflow", "inter1", "kit", ("speed_cnn",), (128,)),
            ("jax", "default", "kit", ("speed_cnn",), (128,)))


def parse_setting(setting: str) -> tuple[str, str, str]:
    """'backend[:threads[:allocator]]' -> (backend, threads, allocator); threads default, allocator kit."""
    backend, threads, allocator = (setting.split(":") + ["", ""])[:3]
    return backend, threads or "default", allocator or "kit"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", help="models for every setting (default: each setting's own list)")
    p.add_argument("--bf16-models", nargs="*", default=["speed_cnn"], help="also timed in mixed_bfloat16")
    p.add_argument("--batch-sizes", nargs="+", type=int, help="(default: each setting's own list)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed epoch")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--settings", nargs="+", default=[f"{b}:{t}:{a}" for b, t, a, _, _ in SETTINGS],
                   help="backend:threads:allocator (threads: default | inter1, TensorFlow only; "
                        "allocator: kit | glibc)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--plot", help="write a bar chart (PNG) here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_backend(args)))
        return 0
    results = []
    own = {(b, t, a): (m, bs) for b, t, a, m, bs in SETTINGS}
    for setting in args.settings:
        backend, threads, allocator = parse_setting(setting)
        models, batch_sizes = own.get((backend, threads, allocator), (MODELS, (128,)))
        cmd = [sys.executable, __file__, "--worker", "1", "--threads", threads,
               "--models", *(args.models or models), "--bf16-models", *args.bf16_models,
               "--batch-sizes", *map(str, args.batch_sizes or batch_sizes),
               "--steps", str(args.steps), "--repeats", str(args.repeats)]
        env = os.environ | {"KERAS_BACKEND": backend}
        if allocator == "glibc":
            env["FER_KERAS_MALLOC_TOP_PAD"] = "0"
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{setting}: failed, skipped ({done.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{setting}: done", file=sys.stderr, flush=True)
    from fer_keras import provenance

    record = {"benchmark": "train_throughput", "settings": results,
              "method": "fit on tiled real faces (bundled sample), kit input path + in-model augmentation 'basic', "
                        "AdamW; median of repeats after a warm-up epoch; GFLOP/s = 3 x forward FLOPs x faces/s",
              "provenance": provenance.provenance(["python", "benchmarks/train_throughput.py",
                                                   *(argv or sys.argv[1:])])}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))
    if args.plot:
        from fer_keras import viz

        viz.save_fig(viz.plot_throughput(record), args.plot)
    print(json.dumps(best_setting(record)))
    return 0


def best_setting(record: dict) -> dict:
    """For each model, the fastest backend / threads / precision / batch size measured."""
    best = {}
    for s in record["settings"]:
        for r in s["runs"]:
            key = r["model"]
            if key not in best or r["faces_per_s"] > best[key]["faces_per_s"]:
                best[key] = r | {"backend": s["backend"], "threads": s["threads"],
                                 "allocator": s.get("allocator", "default")}
    return best


if __name__ == "__main__":
    sys.exit(main())
