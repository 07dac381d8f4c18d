"""Command line: `python -m fer_keras {info,train,evaluate} ...` (also the `fer-keras` script).

Errors in the user's input (missing or malformed data, bad model files, bad options, output paths that
cannot be written) end with one `error:` line, never a traceback. Arguments and output paths are checked
before any work. Exit status: 0 done; 1 `predict` went through every file but some failed (one `error:` line
each, the others' outputs written); 2 bad input, nothing (more) done; 130 interrupted (a training run stays
resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # a --budget counts from here: imports, loading and testing are part of the run

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # silence TF C++ info logs


def parse_duration(text: str) -> float:
    """'15m', '2h', '90s', '1h30m' or a bare number of minutes -> minutes (argparse type for --budget)."""
    import re

    t = str(text).strip().lower()
    try:
        minutes = float(t)
    except ValueError:
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s)?", t)
        if not t or parts is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 15m, 2h, 1h30m or 900s")
        h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
        minutes = 60 * h + m + sec / 60
    if not minutes > 0 or minutes == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the budget must be a positive duration such as 15m")
    return minutes


def _number(kind, low=None, high=None, low_open=False, high_open=False, what="a number"):
    """An argparse type: `kind` (int or float) within [low, high] (open ends where asked), finite, with a fix-it
    message naming the range."""
    import math

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        bad = (kind is float and not math.isfinite(value)) or (low is not None and (value <= low if low_open
                                                                                      else value < low)) \
            or (high is not None and (value >= high if high_open else value > high))
        if bad:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"{text!r}: give {what} {' and '.join(x for x in (lo, hi) if x)}")
        return value
    return parse


POSITIVE_INT = _number(int, 1, what="a whole number")


class OneLineParser(argparse.ArgumentParser):
    """argparse with the CLI's error rule: a bad flag or value is one `error:` line (naming the flag, with a fix),
    exit 2, instead of the usage block. Subcommands get the same class."""

    def error(self, message):
        hint = f"see `{self.prog} --help`"
        fix = "" if "Fix:" in message else f" Fix: {hint}."
        self.exit(2, f"error: {self.prog}: {message.rstrip('.')}.{fix}\n")


def _label_mode(text: str) -> str:
    """argparse type for --labels: fer2013, or a FER+ label set with an optional ':majority' / ':probability'."""
    from fer_keras import config

    ferplus = tuple(config.CONTEMPT_MERGE)  # the FER+ label sets, as data.load_dataset reads them
    label_set, _, mode = str(text).partition(":")
    if not (label_set == "fer2013" and not mode or label_set in ferplus and mode in ("", "majority", "probability")):
        raise argparse.ArgumentTypeError(f"{text!r}: write fer2013, {', '.join(ferplus[:-1])} or {ferplus[-1]}, the "
                                         "FER+ ones optionally with :majority or :probability")
    return text


def _fold(text: str) -> str:
    """argparse type for --leave-out-fold: 'I/K' (fold I, from 0, of K), checked."""
    from fer_keras import config

    try:
        config.parse_fold(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return str(text)


def _devices(text: str):
    """argparse type for --devices: a whole number >= 1 or 'all'."""
    return "all" if str(text).strip().lower() == "all" else POSITIVE_INT(text)



SEED = _number(int, 0, 2 ** 32 - 1, what="a whole number")
POSITIVE = _number(float, 0, low_open=True, what="a number")
FRACTION = _number(float, 0, 1, high_open=True, what="a fraction")
OPEN_FRACTION = _number(float, 0, 1, low_open=True, high_open=True, what="a fraction")


# command -> its output paths: (argument, 'file' or 'folder'), checked before any work (check_outputs).
OUTPUTS = {"train": (("out", "folder"), ("results_json", "file")),
           "evaluate": (("json", "file"), ("report_dir", "folder")),
           "export": (("out", "file"),), "predict": (("out", "folder"), ("json", "file"), ("csv", "file")),
           "explain": (("out", "file or folder"),)}


def check_output(path, flag: str, kind: str, create: bool = True) -> Path:
    """An output path, checked before the work: a 'file' must not be an existing folder, a 'folder' not an
    existing file ('file or folder': either); missing parent folders are created (unless not `create`); a parent
    that is a file, or a folder that cannot be written, is refused with one line naming the flag."""
    path = Path(path).expanduser()
    if kind == "file" and path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file name (e.g. {path / 'out'}{_suffix(flag)}).")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file; give a folder name (or remove the file).")
    folder = path if kind == "folder" or (kind != "file" and (path.is_dir() or str(path).endswith(os.sep))) \
        else path.parent
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{flag} {path}: {blocker} is a file, so no folder can be made there. Fix: choose "
                         "another path.")
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: the folder {existing} is not writable. Fix: choose a writable path.")
    if not create:
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot create the folder {folder} ({err.strerror}). Fix: choose a "
                         "writable path.") from err
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{flag} {path}: the folder {folder} is not writable. Fix: choose a writable path.")
    return path


def _suffix(flag: str) -> str:
    return {"--csv": ".csv", "--out": ".tflite"}.get(flag, ".json")


# commands that make their own output folders after checking their settings, so a refused setting leaves none
MAKES_ITS_OWN_FOLDERS = {"train"}


def check_outputs(args) -> None:
    """Every output path of the command (OUTPUTS), before any work: all checked, then their folders made
    (except for MAKES_ITS_OWN_FOLDERS, which make them once their settings are checked)."""
    outputs = [(getattr(args, dest, None), "--" + dest.replace("_", "-"), kind)
               for dest, kind in OUTPUTS.get(args.command, ())]
    for create in (False,) if args.command in MAKES_ITS_OWN_FOLDERS else (False, True):
        for value, flag, kind in outputs:
            if value:
                check_output(value, flag, kind, create)


def parse_model_arg(text: str) -> tuple[str, object]:
    """'pool=max' -> ('pool', 'max'); values are read as JSON where they parse (numbers, lists), else strings."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. pool=max or widths=[48,96,192]")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_data_args(p):
    p.add_argument("--data", default="sample",
                   help="'sample' (bundled, default), a FER2013 CSV (.csv/.csv.gz) or its folder, or 'fer2013' "
                        "to find the full data via $FER_KERAS_DATA")


def build_parser() -> argparse.ArgumentParser:
    from fer_keras import __version__, config
    from fer_keras.augment import AUGMENT_CHOICES
    from fer_keras.recipes import STEPS
    from fer_keras.models import MODELS

    parser = OneLineParser(prog="fer-keras", description="fer-keras: facial expression recognition "
                                     "course kit (Keras 3).")
    parser.add_argument("--version", action="version", version=f"fer-keras {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, backend, data found, or a model file's record")
    info.add_argument("model", nargs="?", help="a .keras or .tflite file to describe")
    _add_data_args(info)

    train = sub.add_parser("train", help="train a model, test it on the test split, write a report")
    train.add_argument("--step", choices=sorted(STEPS),
                       help="a notebook step (01-10): its model and recipe; other flags override it")
    train.add_argument("--model", choices=sorted(MODELS), help="model builder (default small_cnn)")
    train.add_argument("--data", help="'sample' (bundled; default without --step), a FER2013 CSV or its folder, "
                                      "or 'fer2013' for the full data via $FER_KERAS_DATA (default with --step)")
    train.add_argument("--labels", type=_label_mode, help="fer2013 (default) | ferplus8 | ferplus7 | ferm, optionally "
                                        "':probability' (FER+ soft labels)")
    train.add_argument("--epochs", type=POSITIVE_INT, help="default 30 (steps: 100)")
    train.add_argument("--batch-size", type=POSITIVE_INT, help="default 64")
    train.add_argument("--lr", type=POSITIVE, help="learning rate, default 1e-3 (steps: 1e-4)")
    train.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "adam_gc", "adamw_gc", "sgd_gc"],
                       help="'_gc': with gradient centralization")
    train.add_argument("--loss", choices=["crossentropy", "focal"])
    train.add_argument("--lr-schedule", choices=["cosine", "s000_step"])
    train.add_argument("--width", type=POSITIVE_INT, help="base width of the paper models (default 64)")
    train.add_argument("--model-arg", action="append", type=parse_model_arg, metavar="KEY=VALUE",
                       help="another argument for the model builder, e.g. pool=max or widths=[48,96,192] (repeatable)")
    train.add_argument("--weight-decay", type=FRACTION)
    train.add_argument("--augment", choices=AUGMENT_CHOICES,
                       help="default basic; LEVEL+erase adds random erasing")
    train.add_argument("--mix", choices=config.MIX_CHOICES,
                       help="mix each training batch with itself: mixup blends two faces, cutmix pastes a box of "
                            "one into the other; their labels mix in the same share")
    train.add_argument("--mix-alpha", type=POSITIVE, metavar="ALPHA",
                       help="--mix: the share of each face is drawn from Beta(ALPHA, ALPHA) "
                            f"(default {config.MIX_ALPHA:g})")
    train.add_argument("--class-weights", action="store_true", default=None,
                       help="balanced class weights (scikit-learn)")
    train.add_argument("--reduce-lr", type=POSITIVE_INT, metavar="PATIENCE", help="ReduceLROnPlateau patience")
    train.add_argument("--early-stopping", type=POSITIVE_INT, metavar="PATIENCE",
                       help="EarlyStopping patience (restores the best weights)")
    train.add_argument("--val-fraction", type=_number(float, 0, 0.5, what="a fraction"),
                       help="validation slice of Training, 0 to 0.5 (0: none; default 0.1)")
    train.add_argument("--test-split", choices=["PublicTest", "PrivateTest"])
    train.add_argument("--input-size", type=_number(int, 16, 48, what="a size in pixels"),
                       help="model input; < 48 trains on random crops")
    train.add_argument("--tta", choices=config.TTA_CHOICES)
    train.add_argument("--seed", type=SEED)
    train.add_argument("--teacher", action="append", metavar="MODEL.keras",
                       help="distil from this saved model (repeat for an ensemble; logits averaged)")
    train.add_argument("--alpha", type=_number(float, 0, 1, what="a weight"),
                       help="distillation: weight of the hard-label term (default 0.1)")
    train.add_argument("--temperature", type=POSITIVE, help="distillation temperature T (default 4)")
    train.add_argument("--precompute-teachers", action="store_true", default=None,
                       help="distillation: run the teachers once over the faces before training, not at every step "
                            "(much faster with large teachers; a student with --input-size gets each face's whole-face soft "
                            "label for all its random crops)")
    train.add_argument("--teacher-tta", choices=config.TTA_CHOICES,
                       help="distillation: each teacher's logits averaged over its test-time views of the whole face "
                            "(default none; for a student with 48-pixel input, or with --precompute-teachers)")
    train.add_argument("--leave-out-fold", type=_fold, metavar="I/K",
                       help="train without fold I (from 0) of Training's K stratified folds: an out-of-fold teacher "
                            "for --teacher-folds (its model file records the fold); with a validation slice, it holds out the "
                            "slice its student keeps too (same --val-fraction and --seed)")
    train.add_argument("--teacher-folds", action="store_true", default=None,
                       help="distillation: out-of-fold soft labels; the i-th --teacher left out fold i of K = the "
                            "number of teachers, and labels only the faces of that fold (needs --precompute-teachers)")
    train.add_argument("--time-limit", type=POSITIVE, metavar="MINUTES",
                       help="stop after the epoch that would pass this wall time and leave the run resumable "
                            "(for a session with a hard end)")
    train.add_argument("--budget", type=parse_duration, metavar="DURATION",
                       help="train for a wall-clock budget (15m, 2h, 1h30m) instead of an epoch count: the learning "
                            "rate warms up, then decays to zero at the deadline; loading and testing count too")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted run from its last finished epoch: its --out folder or its "
                            "state folder (other flags except --time-limit are read from the run)")
    train.add_argument("--restart", action="store_true",
                       help="start over even if an interrupted run of the same settings could be continued")
    train.add_argument("--devices", type=_devices, metavar="N|all",
                       help="synchronous data-parallel training over N devices (or all): keras.distribution on "
                            "JAX, tf.distribute.MirroredStrategy on TensorFlow; --batch-size stays the global batch")
    train.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"],
                       help="auto (default): mixed_bfloat16 where the CPU has native bf16, else float32")
    train.add_argument("--fused-bn", action="store_true", default=None,
                       help="train the BatchNormalization layers through TensorFlow's fused kernel (the same model "
                            "and file; faster on the AVX-512 Xeon, not on every CPU: "
                            "results/train_throughput_fused_bn_*.json; time both with benchmarks/train_throughput.py)")
    train.add_argument("--label-smoothing", type=FRACTION)
    train.add_argument("--ema", type=OPEN_FRACTION, metavar="MOMENTUM", help="average the weights (e.g. 0.999)")
    train.add_argument("--warmup", type=FRACTION, help="budget schedule: warm-up fraction (default 0.1)")
    train.add_argument("--out", default="runs/quickstart", help="output folder")
    train.add_argument("--results-json", help="also copy results.json here (e.g. results/<run>.json)")

    ev = sub.add_parser("evaluate", help="evaluate a .keras/.tflite model on one split")
    ev.add_argument("model", nargs="+", help="a .keras or .tflite file saved by the kit; several: their ensemble "
                                             "(logits averaged), each member scored too")
    _add_data_args(ev)
    ev.add_argument("--split", default="PublicTest", choices=["Training", "PublicTest", "PrivateTest"])
    ev.add_argument("--ten-crop", action="store_true", help="ten-crop TTA (models with input < 48)")
    ev.add_argument("--flip", action="store_true", help="horizontal-flip TTA")
    ev.add_argument("--json", help="write the metrics JSON here")
    ev.add_argument("--report-dir", help="also write confusion_matrix.png and per_class.csv here")
    exp = sub.add_parser("export", help="convert a .keras model to .tflite (float32, dynamic, float16, int8)")
    exp.add_argument("model", help="a .keras file saved by the kit")
    exp.add_argument("--mode", default="int8", choices=["float32", "dynamic", "float16", "int8"])
    _add_data_args(exp)
    exp.add_argument("--calibration", type=_number(int, 1, 100_000, what="a number of faces"), default=200,
                     help="int8: calibration faces from Training")
    exp.add_argument("--allow-float", action="store_true",
                     help="int8: accept ops that stay float (no int8 kernel) instead of refusing")
    exp.add_argument("--out", help="output .tflite (default: MODEL_MODE.tflite beside the model)")
    exp.add_argument("--results-json", metavar="FILE",
                     help="int8: the model's run results (from train --results-json): score the int8 file on its "
                          "test split, time one face on one thread, and add both to FILE as its 'int8' record")

    pr = sub.add_parser("predict", help="find faces in images or videos and label their expressions")
    pr.add_argument("paths", nargs="+", help="image files (jpg, png, webp, ...) or videos (mp4, avi, ...)")
    pr.add_argument("--model", help="a .keras or .tflite file, or a shipped model by name: tiny (the default) or "
                                    "accurate")
    pr.add_argument("--out", default="predictions", help="folder for the annotated copies")
    pr.add_argument("--json", help="write every file's faces and probabilities here")
    pr.add_argument("--csv", help="one row per face: file, box, label, probabilities")

    dm = sub.add_parser("demo", help="serve the browser demo (upload or webcam -> annotated image)")
    dm.add_argument("--model", help="a .keras or .tflite file, or a shipped model by name: tiny (the default) or "
                                    "accurate")
    dm.add_argument("--host", default="127.0.0.1")
    dm.add_argument("--port", type=_number(int, 1, 65535, what="a port"), default=8000)

    cp = sub.add_parser("campaign", help="the full-data campaign: what is done and left, run the next runs, "
                        "save partial runs' states to commit")
    cp.add_argument("action", choices=["status", "run", "save"])
    cp.add_argument("--minutes", type=POSITIVE, help="run: wall-clock minutes this session can give (required)")
    cp.add_argument("--only", nargs="+", metavar="RUN", help="run: only these planned runs (names from status)")
    cp.add_argument("--dry-run", action="store_true", help="run: print the commands only")
    cp.add_argument("--results", default="results", help="results folder (default results)")
    cp.add_argument("--runs", default="runs", help="run output folder (default runs)")
    ex = sub.add_parser("explain", help="write a saliency overlay PNG for a face image")
    ex.add_argument("image", help="an image of one face (the whole image is used as the face crop)")
    ex.add_argument("--model", required=True, help="a .keras file saved by the kit")
    ex.add_argument("--method", choices=["grad_cam", "score_cam", "occlusion", "meaningful_perturbation"],
                    help="default: grad_cam on the TensorFlow backend, score_cam (forward passes only) on the others")
    ex.add_argument("--class", dest="class_name", help="class to explain (default: the predicted one)")
    ex.add_argument("--out", help="output PNG (default: IMAGE_STEM_METHOD.png beside the image)")
    return parser


def cmd_predict(args) -> int:
    from fer_keras import apply

    records = apply.predict_paths(args.paths, args.model, args.out, progress=sys.stdout.isatty())
    failed = 0
    for r in records:
        if "error" in r:
            failed += 1
            print(f"error: {r['error']}", file=sys.stderr)
        elif "frames" in r:
            n = sum(len(f["faces"]) for f in r["analysed"])
            print(f"{r['file']}: {r['frames']} frames, {n} faces -> {r['output']}")
        elif not r["faces"]:
            print(f"{r['file']}: {r['note']} -> {r['output']}")
        else:
            labels = ", ".join(f"{f['label']} {f['confidence']:.2f}" for f in r["faces"])
            print(f"{r['file']}: {len(r['faces'])} face(s): {labels} -> {r['output']}")
    from fer_keras.training import atomic_write_text

    if args.json:
        atomic_write_text(args.json, json.dumps(records, indent=1))
    if args.csv:
        atomic_write_text(args.csv, apply.records_table(records).to_csv(index=False))
    return 1 if failed else 0


def cmd_demo(args) -> int:
    from fer_keras import apply, webdemo

    server = webdemo.make_server(apply.Recognizer(args.model), args.host, args.port)
    print(f"fer-keras demo on http://{args.host}:{server.server_address[1]}/ (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_export(args) -> int:
    from fer_keras import compress, data, provenance

    if Path(args.model).suffix.lower() != ".keras":
        raise ValueError(f"{args.model}: export converts a .keras model saved by the kit"
                         + (" (this is already a .tflite file)" if args.model.lower().endswith(".tflite") else "")
                         + ". Fix: pass the .keras file.")
    split, labels = _run_test_split(args.results_json, args.mode) if args.results_json else (None, "fer2013")
    splits = data.load_dataset(args.data, labels, usages=["Training"] + ([split] if split else [])) \
        if args.mode == "int8" else {}
    faces = splits["Training"].x if splits else None
    out = Path(args.out) if args.out else Path(args.model).with_name(f"{Path(args.model).stem}_{args.mode}.tflite")
    if split:
        results = compress.record_int8(args.results_json, args.model, out, faces, splits[split], args.calibration,
                                       strict=not args.allow_float, command=" ".join(args.invocation),
                                       **provenance.load())
        r = results["int8"]
        print(f"wrote {out} ({r['kb']:.0f} KB, int8): {split} accuracy {r['accuracy']:.4f}, "
              f"{r['latency_single_thread']['median_ms']:.3f} ms/face on one thread; recorded in {args.results_json}")
        return 0
    path = compress.export_tflite(args.model, out, args.mode, faces, args.calibration, strict=not args.allow_float)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB, {args.mode})")
    return 0


def _run_test_split(path, mode: str) -> tuple[str, str]:
    """export --results-json: the test split and label set named by that run results file, checked before any
    work."""
    if mode != "int8":
        raise ValueError(f"--results-json records an int8 export; --mode is {mode}. Fix: add --mode int8 or drop "
                         "--results-json.")
    try:
        results = json.loads(Path(path).read_text())
        if "test" not in results:
            raise KeyError("test")
        return results["data"]["test_split"], results["data"].get("label_mode", "fer2013")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--results-json {path}: cannot be read ({getattr(err, 'strerror', None) or err}). Fix: "
                         "pass the results file that train --results-json wrote for this model.") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"--results-json {path}: not a run results file (no test split and test metrics). Fix: "
                         "pass the results file that train --results-json wrote for this model.") from None


def cmd_explain(args) -> int:
    import numpy as np

    from fer_keras import apply, explain, modelfile, models, viz

    method = args.method or explain.default_method()
    loaded = modelfile.load_model(args.model)
    if loaded.keras_model is None:
        raise ValueError(f"{args.model}: explain needs the .keras model (gradients and activations), not a "
                         ".tflite file. Fix: pass the .keras file it was exported from.")
    names = loaded.metadata["class_names"]
    target = None
    if args.class_name:
        if args.class_name not in names:
            raise ValueError(f"class {args.class_name!r}: choose one of {', '.join(names)}")
        target = names.index(args.class_name)
    face = apply.center_face(apply.read_image(args.image))
    net = models.without_tta(loaded.keras_model)  # a model with its TTA inside: explain its network, one view
    maps, probs, crop = explain.explain_faces(net, face[None], method, target)
    c = int(probs[0].argmax()) if target is None else target
    title = f"{names[c]} p={probs[0][c]:.2f}"
    fig = viz.plot_saliency(crop, {method: maps}, titles=[title], size=2.4)
    name = f"{Path(args.image).stem}_{method}.png"
    out = Path(args.out) if args.out else Path(args.image).with_name(name)
    if args.out and (out.is_dir() or args.out.endswith(("/", os.sep))):  # --out a folder: the file goes inside
        out = out / name
    viz.save_fig(fig, out)
    top = np.argsort(probs[0])[::-1][:3]
    print(f"{args.image}: " + ", ".join(f"{names[i]} {probs[0][i]:.2f}" for i in top) + f" -> wrote {out}")
    return 0


def cmd_campaign(args) -> int:
    from fer_keras import campaign

    names = {r.name for r in campaign.PLAN}
    unknown = sorted(set(args.only or []) - names)
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)}: not a planned run. Fix: pick names from "
                         "`python -m fer_keras campaign status`.")
    if args.action == "status":
        print(campaign.format_status(campaign.status(results_dir=args.results, runs_dir=args.runs)))
    elif args.action == "save":
        print("\n".join(campaign.save_states(results_dir=args.results, runs_dir=args.runs)) or "no partial runs")
    else:
        if args.minutes is None:
            raise ValueError("campaign run needs --minutes: the wall-clock time this session can give, e.g. "
                             "--minutes 150.")
        campaign.run_next(args.minutes, results_dir=args.results, runs_dir=args.runs, dry_run=args.dry_run,
                          only=args.only)
    return 0


def cmd_info(args) -> int:
    import platform

    import keras
    import numpy as np

    from fer_keras import __version__, config, data, modelfile

    if args.model:
        print(json.dumps(modelfile.read_metadata(args.model), indent=1))
        return 0
    print(f"fer-keras {__version__} | Python {platform.python_version()} | Keras {keras.__version__} "
          f"| backend {keras.backend.backend()}")
    splits = data.load_dataset(args.data)
    for usage, s in splits.items():
        counts = ", ".join(f"{n} {c}" for n, c in zip(config.FER2013_CLASSES, np.bincount(s.y, minlength=7)))
        print(f"{args.data} {usage}: {len(s.y)} faces ({counts})")
    return 0


# CLI flag -> train_and_evaluate argument
_TRAIN_ARGS = {"model": "model", "data": "source", "labels": "label_mode", "epochs": "epochs",
               "batch_size": "batch_size", "lr": "learning_rate", "optimizer": "optimizer",
               "weight_decay": "weight_decay", "augment": "augment", "class_weights": "class_weights",
               "reduce_lr": "reduce_lr_patience", "early_stopping": "early_stopping_patience",
               "val_fraction": "val_fraction", "test_split": "test_split", "input_size": "input_size",
               "tta": "tta", "seed": "seed", "time_limit": "time_limit_minutes", "loss": "loss",
               "lr_schedule": "lr_schedule", "teacher": "teachers", "alpha": "distill_alpha",
               "temperature": "distill_temperature", "precompute_teachers": "precompute_teachers",
               "teacher_tta": "teacher_tta", "leave_out_fold": "leave_out_fold", "teacher_folds": "teacher_folds",
               "budget": "budget_minutes", "precision": "precision",
               "label_smoothing": "label_smoothing", "ema": "ema", "warmup": "warmup", "devices": "devices",
               "mix": "mix", "mix_alpha": "mix_alpha", "fused_bn": "fused_batch_norm"}


def cmd_train(args) -> int:
    from fer_keras import experiment

    command = args.invocation
    if args.resume:
        results = experiment.resume_run(args.resume, args.time_limit, command=command, started=STARTED,
                                        devices=args.devices)
        return _report_train(results, args, Path(results["out_dir"]))
    kwargs = experiment.step_config(args.step, "full") if args.step else {"source": "sample", "epochs": 30}
    kwargs |= {dest: getattr(args, flag) for flag, dest in _TRAIN_ARGS.items() if getattr(args, flag) is not None}
    if args.width:
        kwargs["model_kwargs"] = (kwargs.get("model_kwargs") or {}) | {"width": args.width}
    if args.model_arg:
        kwargs["model_kwargs"] = (kwargs.get("model_kwargs") or {}) | dict(args.model_arg)
    experiment.require_teacher(args.step, kwargs)
    if args.restart:
        kwargs["resume"] = False
    results = experiment.train_and_evaluate(out_dir=args.out, command=command, started=STARTED, **kwargs)
    return _report_train(results, args, Path(args.out))


def _report_train(results: dict, args, out: Path) -> int:
    if args.results_json:
        from fer_keras.training import atomic_write_text

        Path(args.results_json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results_json, json.dumps(results, indent=1))
    _print_summary(results["test"], f"{results['model']} on {results['data']['test_split']}")
    if results.get("stopped_by_time_limit"):
        print(f"stopped by --time-limit after epoch {results['epochs_run']}; continue with: "
              f"python -m fer_keras train --resume {out}")
    print(f"wrote {out}/: model.keras, results.json, history.csv, per_class.csv, "
          "learning_curves.png, confusion_matrix.png")
    return 0


def cmd_evaluate(args) -> int:
    from fer_keras import evaluation

    tta = "ten_crop" if args.ten_crop else "flip" if args.flip else "none"
    metrics = evaluation.evaluate_files(args.model, args.data, args.split, tta)
    for path, member in metrics.get("members", {}).items():
        print(f"{path} on {args.split}: accuracy {member['accuracy']:.4f}, macro-F1 {member['macro_f1']:.4f}")
    name = " + ".join(Path(p).name for p in args.model)
    _print_summary(metrics, f"{'ensemble of ' if len(args.model) > 1 else ''}{' + '.join(args.model)} on {args.split}")
    if args.json:
        from fer_keras.provenance import provenance
        from fer_keras.training import atomic_write_text

        record = metrics | {"provenance": provenance(args.invocation)}
        if len(args.model) > 1:  # an ensemble's cost: its members' training runs and this evaluation
            from fer_keras.experiment import members_minutes

            record["cost"] = members_minutes(args.model, time.perf_counter() - STARTED)
        atomic_write_text(args.json, json.dumps(record, indent=1))
    if args.report_dir:
        from fer_keras.experiment import write_metrics_report

        write_metrics_report(metrics, args.report_dir, f"{name} on {args.split}")
    return 0


def _print_summary(m: dict, title: str) -> None:
    print(f"\n{title}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, n={m['n']}, tta={m['tta']}")
    print(f"{'class':>10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
    for name, r in m["per_class"].items():
        print(f"{name:>10} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:6.3f} {r['support']:7d}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from fer_keras.apply import ImageError
    from fer_keras.compress import CompressError
    from fer_keras.data import FerDataError
    from fer_keras.modelfile import ModelFileError

    args = build_parser().parse_args(argv)
    args.invocation = ["python", "-m", "fer_keras"] + list(sys.argv[1:] if argv is None else argv)  # provenance
    try:
        check_outputs(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    commands = {"info": cmd_info, "campaign": cmd_campaign, "train": cmd_train, "evaluate": cmd_evaluate,
                "explain": cmd_explain, "export": cmd_export, "predict": cmd_predict, "demo": cmd_demo}
    previous = None
    if args.command == "train":  # SIGTERM (a scheduler, `kill`, a closing session) ends a run as Ctrl-C does
        try:
            previous = signal.signal(signal.SIGTERM, _interrupt)
        except ValueError:  # not the main thread: leave signals alone
            previous = None
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        if args.command != "train":
            raise
        print(f"\ninterrupted: the last finished epoch is kept; continue with: python -m fer_keras train "
              f"--resume {args.resume or args.out}", file=sys.stderr)
        return 130
    except (FerDataError, ModelFileError, ImageError, CompressError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
