"""Measure the data layer on the full data and write results/data_layer.json (with provenance).

    python scripts/measure_data.py ../shared/data
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from fer_keras import config, data, provenance


def main(folder: str) -> None:
    folder = Path(folder)
    fer_csv = data.find_data_file(config.FER2013_FILES, folder)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        splits = data.load_fer2013(fer_csv)
        times.append(time.perf_counter() - start)
    votes, usage, has_name = data.read_ferplus_votes(folder / "fer2013new.csv")
    ferm = {}
    for mode in ("majority", "probability"):
        _, keep = data.ferplus_labels(votes, mode, "ferm")
        ferm[mode] = {u: int((keep & has_name)[usage == u].sum()) for u in config.USAGES}
    plus = data.load_ferplus(fer_csv, folder / "fer2013new.csv", "majority", "ferplus8")
    table = data.compare_labels(splits["Training"], plus["Training"])
    agree = {c: float(table.loc[c, c] / max(1, table.loc[c].sum())) for c in config.FER2013_CLASSES}
    ck = data.load_ckplus(folder / "ckplus48.csv.gz")
    leaky = data.fold_leakage(data.leaky_kfold(ck.y), ck.subject)
    fair = data.fold_leakage(data.subject_kfold(ck.y, ck.subject, 10, seed=0), ck.subject)
    result = {
        "fer2013_csv": fer_csv.name,
        "rows": int(sum(len(s.y) for s in splits.values())),
        "load_seconds_runs": [round(t, 2) for t in times],
        "load_seconds_median": round(float(np.median(times)), 2),
        "ferplus_kept_per_usage": ferm,
        "ferplus8_majority_training_agreement_with_fer2013": {
            "overall": float(sum(table.loc[c, c] for c in config.FER2013_CLASSES) / table.to_numpy().sum()),
            "per_fer2013_class": agree, "images_compared": int(table.to_numpy().sum())},
        "ckplus_test_rows_with_training_subject": {"leaky_per_class_folds": leaky, "subject_folds_seed0": fair,
                                                  "total_rows": len(ck.y)},
        "provenance": provenance.provenance(),
    }
    out = Path("results/data_layer.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
