"""Notebooks 11-12 on a real model, as one measured report: the four TFLite exports against Keras, the
Hessian sensitivity ranking, the int8 + float mixed-precision sweep, and (optionally) the PRJ pruning loop.

    python scripts/compress_report.py MODEL.keras --data fer2013 --out results/compress_X.json [--prj-steps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path



def main(argv=None) -> int:
    import keras

    from fer_keras import compress, data, modelfile, provenance, pruning

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data", default="fer2013")
    p.add_argument("--out", required=True)
    p.add_argument("--calibration", type=int, default=500)
    p.add_argument("--probes", type=int, default=10)
    p.add_argument("--hessian-faces", type=int, default=350)
    p.add_argument("--prj-steps", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    splits = data.load_dataset(args.data, usages=["Training", "PublicTest"])
    train, test = splits["Training"], splits["PublicTest"]
    out = {"model": args.model, "data": {"source": args.data, "test_split": "PublicTest", "test_n": len(test.y)}}
    with tempfile.TemporaryDirectory() as tmp:
        table = compress.compare_exports(args.model, tmp, test, train.x, args.calibration)
        out["exports"] = json.loads(table.to_json(orient="index"))
        model = modelfile.load_model(args.model).keras_model
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        pick = data.stratified_indices(train.y, args.hessian_faces // 7, 0)
        traces = pruning.hessian_traces(model, train.x[pick], train.y[pick], probes=args.probes)
        sens = pruning.sensitivity_table(traces)
        out["hessian"] = {"probes": args.probes, "faces": len(pick),
                          "ranking": json.loads(sens[["mean trace", "trace", "params"]].to_json(orient="index"))}
        sweep = compress.mixed_precision_sweep(args.model, list(sens.index), [0, 1, 2, 3], test, tmp, train.x,
                                               args.calibration)
        out["mixed_precision"] = json.loads(sweep.to_json(orient="index"))
        if args.prj_steps:
            _, history = pruning.punish_reward_judge(model, train, test, max_steps=args.prj_steps)
            out["prj"] = {"judge": "PublicTest (as S003 judges on its test set)", "step_fraction": 0.05,
                          "gamma_l1": 1e-4, "max_drop": 0.01, "reward_epochs": 1,
                          "history": json.loads(history.to_json(orient="index"))}
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["provenance"] = provenance.provenance(["python", "scripts/compress_report.py"] +
                                              (argv if argv is not None else sys.argv[1:]))
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(table.round(4).iloc[:, :5].to_string())
    print(sweep.round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
