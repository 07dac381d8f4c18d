"""Notebook 13's whole-split analyses on a real model, as one measured report: accuracy and confidence under
each transform over the whole test split, Grad-CAM attention per face band per class (correct faces), and
the randomisation sanity check (rank correlation of maps, trained vs re-initialised weights).

    python scripts/explain_report.py MODEL.keras --data fer2013 --out results/explain_X.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path



def main(argv=None) -> int:
    from fer_keras import data, explain, modelfile, provenance

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data", default="fer2013")
    p.add_argument("--out", required=True)
    p.add_argument("--sanity-faces", type=int, default=64)
    args = p.parse_args(argv)
    start = time.perf_counter()
    test = data.load_dataset(args.data, usages=["PublicTest"])["PublicTest"]
    loaded = modelfile.load_model(args.model)
    model = loaded.keras_model
    robust = explain.robustness(loaded.predict, test.x, test.y, model.input_shape[1])
    maps, probs, _ = explain.explain_faces(model, test.x, "grad_cam")
    regions = explain.attention_by_region(maps, test.y, probs.argmax(1))
    sanity = {}
    sub = slice(0, args.sanity_faces)
    x = data.to_model_input(test.x[sub])
    for which in ("top", "all"):
        random_model = explain.randomized_copy(model, which, seed=1)
        for method in ("grad_cam", "score_cam"):
            trained = maps[sub] if method == "grad_cam" else explain.score_cam(model, x, probs[sub].argmax(1))
            shuffled = explain.saliency(method, random_model, x, probs[sub].argmax(1))
            sanity[f"{method} / {which}"] = explain.rank_correlation(trained, shuffled)
    out = {"model": args.model, "data": {"source": args.data, "split": "PublicTest", "n": len(test.y)},
           "robustness": json.loads(robust.to_json(orient="index")),
           "attention_by_region_grad_cam": json.loads(regions.to_json(orient="index")),
           "regions": explain.REGIONS, "sanity_rank_correlation": sanity, "sanity_faces": args.sanity_faces,
           "seconds": round(time.perf_counter() - start, 1),
           "provenance": provenance.provenance(["python", "scripts/explain_report.py"] +
                                               (argv if argv is not None else sys.argv[1:]))}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(robust.round(4).to_string())
    print(regions.round(3).to_string())
    print(sanity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
