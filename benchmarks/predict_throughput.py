"""Faces per second of the shipped model on this CPU: Keras (batch of 32, all threads) against its int8
.tflite (LiteRT, one thread, one face at a time), through the same `apply.Recognizer` the CLI uses; plus
the whole pipeline (detect + crop + classify) on the bundled group photo.

    python benchmarks/predict_throughput.py --out results/predict_throughput.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np



def main(argv=None) -> int:
    from fer_keras import apply, provenance

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    photo, _ = apply.sample_photo(6, seed=0)
    crops = apply.crop_faces(photo, apply.detect_faces(photo))
    batch = np.resize(crops, (32, 48, 48)).astype(np.uint8)
    result = {"faces_per_second": {}, "pipeline_photos_per_second": {}}
    for name, path in (("keras", apply.default_model_path()),
                       ("int8 tflite", next(apply.PRETRAINED_DIR.glob("*.tflite")))):
        rec = apply.Recognizer(path)
        result["faces_per_second"][name] = apply.throughput(rec, batch, args.seconds)
        rec.analyse(photo)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds / 2:
            rec.analyse(photo)
            n += 1
        result["pipeline_photos_per_second"][name] = n / (time.perf_counter() - start)
        result[f"{name} file"] = path.name
    result["photo"] = f"bundled group photo {photo.shape[1]}x{photo.shape[0]}, {len(crops)} faces"
    result["provenance"] = provenance.provenance(["python", "benchmarks/predict_throughput.py"] +
                                                 (argv if argv is not None else sys.argv[1:]))
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
