"""Input-pipeline throughput: the kit's path vs Keras' legacy ImageDataGenerator.flow (as S004 uses it).

    python benchmarks/input_pipeline.py [--images 4096] [--batch-size 64] [--json results/input_pipeline.json]

Both produce augmented float32 batches of 48x48x1 faces with the same augmentations: rotation 20
degrees, shifts 0.1, horizontal flip, zoom 0.1, brightness [0.8, 1.2] (multiplicative), nearest fill.
- legacy: ImageDataGenerator(...).flow(x, y, batch_size), per image on the CPU with SciPy/PIL.
- kit: training.FaceBatches (uint8 -> float32 batches, shuffled) + the in-model augmentation layers
  (augment.build_augmentation('strong')) applied to each whole batch, compiled once (tf.function on
  the TensorFlow backend), as `fit` runs them inside the train step.
Timing: the same number of images through each, after one warm-up batch, wall clock, this machine.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from fer_keras import augment, data, provenance, training  # noqa: E402


def faces(n):
    """n faces from the bundled sample, tiled (content does not matter for throughput)."""
    s = data.load_sample(["Training"])["Training"]
    reps = int(np.ceil(n / len(s.y)))
    return np.tile(s.x, (reps, 1, 1))[:n], np.tile(s.y, reps)[:n]


def time_legacy(x, y, batch_size):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,
                             horizontal_flip=True, zoom_range=0.1, brightness_range=(0.8, 1.2), fill_mode="nearest")
    flow = gen.flow(x[..., None].astype(np.float32), keras.utils.to_categorical(y, 7), batch_size=batch_size,
                    shuffle=True, seed=0)
    next(flow)  # warm-up
    start, seen = time.perf_counter(), 0
    while seen < len(x):
        xb, _ = next(flow)
        seen += len(xb)
    return seen / (time.perf_counter() - start)


def time_kit(x, y, batch_size):
    aug = augment.build_augmentation("strong", seed=0)
    step = (lambda b: aug(b, training=True))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        step = tf.function(step, reduce_retracing=True)
    batches = training.FaceBatches(x, y, batch_size, shuffle=True, seed=0)
    keras.ops.convert_to_numpy(step(batches[0][0]))  # warm-up (compiles)
    start, seen = time.perf_counter(), 0
    for i in range(len(batches)):
        xb, _ = batches[i]
        out = step(xb)
        seen += len(xb)
    keras.ops.convert_to_numpy(out)
    return seen / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json")
    args = p.parse_args(argv)
    x, y = faces(args.images)
    legacy, kit = time_legacy(x, y, args.batch_size), time_kit(x, y, args.batch_size)
    result = {"images": args.images, "batch_size": args.batch_size,
              "legacy_imagedatagenerator_images_per_s": round(legacy, 1),
              "kit_pydataset_inmodel_augmentation_images_per_s": round(kit, 1),
              "speedup": round(kit / legacy, 2),
              "augmentations": "rotation 20, shift 0.1, flip, zoom 0.1, brightness [0.8, 1.2]",
              "provenance": provenance.provenance()}
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
