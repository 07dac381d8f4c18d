"""The hostile-input corpus (issue 19), generated into a folder: what a careless or malicious user could hand the
command line. CSV files, model files, images, videos, flags and output paths, plus injected faults.

Every case is a `Case`: the argv for `fer_keras.cli.main` and the outcome it must have:
- 'ok': exit 0 (and, where given, `check(folder, stdout)` passes);
- 'error': exit 1 or 2 with exactly one `error:` line on stderr that names `names` (the file or the flag);
never a traceback. tests/test_hostile_corpus.py runs them all; tests/test_apply.py reuses the image payloads.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = "error"  # 'ok' or 'error'
    names: tuple[str, ...] = ()  # the error line must name each (a file name, a flag)
    check: Callable | None = None  # check(folder, stdout) for an 'ok' case


# --- images ----------------------------------------------------------------------------------------------------

def png_with_size(width, height) -> bytes:
    """A PNG whose header claims width x height (tiny body): decoding it would need ~width*height bytes."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def image_payloads(photo: np.ndarray) -> dict[str, bytes]:
    """file name -> bytes: malformed, hostile or odd images (and non-images named as images)."""
    rgb = Image.fromarray(photo).convert("RGB")
    jpeg, png = encode(rgb, "JPEG"), encode(rgb, "PNG")
    return {
        "zero_bytes.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "truncated.png": png[: len(png) // 2],
        "header_only.jpg": jpeg[:20],
        "random_bytes.jpg": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "pdf_renamed.jpg": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
        "html_renamed.png": b"<html><body>not an image</body></html>",
        "text.webp": b"just some text\n" * 20,
        "huge_20k.png": png_with_size(20000, 20000),
        "wide_100k.png": png_with_size(100000, 1000),
        "one_pixel.png": encode(Image.new("L", (1, 1)), "PNG"),
        "tiny_8x8.png": encode(Image.new("L", (8, 8)), "PNG"),
        "blank.png": encode(Image.new("L", (300, 300), 200), "PNG"),
        "noise.png": encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 200), dtype=np.uint8)),
                            "PNG"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "grey16.png": encode(Image.fromarray((photo.astype(np.uint16) * 257)), "PNG"),
        "rgba.png": encode(rgb.convert("RGBA"), "PNG"),
        "palette.png": encode(rgb.convert("P"), "PNG"),
        "la.png": encode(rgb.convert("LA"), "PNG"),
        "grey.jpg": encode(rgb.convert("L"), "JPEG"),
        "photo.bmp": encode(rgb, "BMP"),
        "photo.tiff": encode(rgb, "TIFF"),
        "photo.webp": encode(rgb, "WEBP"),
        "photo.gif": encode(rgb.convert("P"), "GIF"),
        "animated.gif": encode(rgb.convert("P"), "GIF", save_all=True,
                               append_images=[Image.new("P", rgb.size, 3)] * 3, duration=50, loop=0),
        "jpeg_named.png": jpeg,
        "png_named.jpg": png,
        "bad_crc.png": png[:33] + bytes([png[33] ^ 0xFF]) + png[34:],
        "garbage_after_header.png": png[:16] + b"\x00" * 200,
        "very_wide_strip.png": encode(Image.new("L", (4000, 20), 90), "PNG"),
        "mp4_renamed.jpg": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100,
        "zip_renamed.png": b"PK\x03\x04" + b"\x00" * 100,
        "float_tiff.tif": encode(Image.fromarray((photo / 255.0).astype(np.float32)), "TIFF"),
        "exif_rotated.jpg": _exif_rotated(rgb),
    }


def _exif_rotated(rgb: Image.Image) -> bytes:
    """The photo stored turned 90° counter-clockwise with EXIF orientation 8 (rotate 90° clockwise to view), as a
    phone writes it: read upright only if the orientation is applied."""
    exif = Image.Exif()
    exif[0x0112] = 8
    return encode(rgb.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())


# Images that must be read and analysed (exit 0): odd but valid files.
IMAGES_OK = ("blank.png", "noise.png", "cmyk.jpg", "grey16.png", "rgba.png", "palette.png", "la.png", "grey.jpg",
             "photo.bmp", "photo.tiff", "photo.webp", "photo.gif", "animated.gif", "jpeg_named.png", "png_named.jpg",
             "very_wide_strip.png", "float_tiff.tif", "exif_rotated.jpg", "bad_crc.png")


def write_images(folder: Path, photo: np.ndarray) -> dict[str, Path]:
    """image_payloads written into `folder`, plus a missing file and a folder named like an image."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, payload in image_payloads(photo).items():
        (folder / name).write_bytes(payload)
        paths[name] = folder / name
    paths["missing.jpg"] = folder / "does_not_exist.jpg"
    (folder / "a_folder.png").mkdir(exist_ok=True)
    paths["a_folder.png"] = folder / "a_folder.png"
    return paths


# --- FER2013 CSVs ----------------------------------------------------------------------------------------------

def _row(emotion=3, usage="Training", seed=0, pixels=None) -> str:
    px = pixels if pixels is not None else " ".join(map(str, np.random.default_rng(seed).integers(0, 256, 2304)))
    return f"{emotion},{px},{usage}"


def csv_payloads() -> dict[str, tuple[bytes, str, tuple[str, ...]]]:
    """file name -> (bytes, 'ok' or 'error', what the error must name besides the file)."""
    good = [_row(i % 7, u, i) for i, u in enumerate(["Training"] * 8 + ["PublicTest"] * 3 + ["PrivateTest"] * 3)]
    head = "emotion,pixels,Usage"
    text = lambda rows, h=head: ("\n".join([h, *rows]) + "\n").encode()  # noqa: E731
    px = " ".join(["7"] * 2304)
    cases = {
        "good.csv": (text(good), "ok", ()),
        "good_crlf.csv": (text(good).replace(b"\n", b"\r\n"), "ok", ()),
        "good_bom.csv": (b"\xef\xbb\xbf" + text(good), "ok", ()),
        "good_no_private.csv": (text(good[:11]), "ok", ()),
        "good_double_spaces.csv": (text([_row(2, "Training", pixels="  ".join(["9"] * 2304))] + good), "ok", ()),
        "good_zero_padded.csv": (text([_row(2, "Training", pixels=" ".join(["0012"] * 2304))] + good), "ok", ()),
        "good_column_order.csv": (text([f"{u},{e},{p}" for e, p, u in (r.split(",") for r in good)],
                                       "Usage,emotion,pixels"), "ok", ()),
        "good_extra_column.csv": (text([r + ",x" for r in good], head + ",note"), "ok", ()),
        "good.csv.gz": (gzip.compress(text(good)), "ok", ()),
        "empty.csv": (b"", "error", ("empty",)),
        "header_only.csv": (text([]), "error", ("no rows",)),
        "no_header.csv": (text(good[1:], good[0]), "error", ("missing column",)),
        "wrong_header.csv": (text(good, "label,image,split"), "error", ("missing column",)),
        "missing_usage.csv": (text([",".join(r.split(",")[:2]) for r in good], "emotion,pixels"), "error",
                              ("Usage",)),
        "2303_pixels.csv": (text([_row(pixels=" ".join(["1"] * 2303))] + good), "error", ("line 2", "2303")),
        "2305_pixels.csv": (text([_row(pixels=" ".join(["1"] * 2305))] + good), "error", ("line 2", "2305")),
        "empty_pixels.csv": (text(good + [_row(pixels="")]), "error", ("line 16",)),
        "pixel_256.csv": (text([_row(pixels=px[:-1] + "256")] + good), "error", ("line 2", "256")),
        "pixel_negative.csv": (text([_row(pixels="-1 " + px[2:])] + good), "error", ("line 2",)),
        "pixel_float.csv": (text([_row(pixels="1.5 " + px[2:])] + good), "error", ("line 2",)),
        "pixel_letters.csv": (text([_row(pixels="ab " + px[2:])] + good), "error", ("line 2",)),
        "pixel_commas.csv": (text([_row(pixels='"' + px.replace(" ", ",") + '"')] + good), "error", ("line 2",)),
        "emotion_7.csv": (text([_row(7)] + good), "error", ("line 2", "emotion")),
        "emotion_negative.csv": (text([_row(-1)] + good), "error", ("line 2", "emotion")),
        "emotion_text.csv": (text([_row("happy")] + good), "error", ("line 2", "emotion")),
        "emotion_float.csv": (text([_row("3.5")] + good), "error", ("line 2", "emotion")),
        "emotion_empty.csv": (text([_row("")] + good), "error", ("line 2", "emotion")),
        "usage_unknown.csv": (text([_row(usage="Validation")] + good), "error", ("line 2", "Usage")),
        "usage_lowercase.csv": (text([_row(usage="training")] + good), "error", ("line 2", "Usage")),
        "extra_field.csv": (text(good + [_row() + ",extra"]), "error", ()),
        "semicolons.csv": (text([r.replace(",", ";") for r in good], head.replace(",", ";")), "error",
                           ("missing column",)),
        "utf16.csv": (text(good).decode().encode("utf-16"), "error", ()),
        "binary_garbage.csv": (np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "error", ()),
        "truncated.csv.gz": (gzip.compress(text(good))[:200], "error", ()),
        "not_gzip.csv.gz": (text(good), "error", ()),
        "truncated_last_row.csv": (text(good)[:-3000], "error", ()),
        "only_private.csv": (text(good[11:]), "ok", ()),  # `info` lists what is there
    }
    return cases


def zip_payloads() -> dict[str, bytes]:
    good = csv_payloads()["good.csv"][0]

    def z(files):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, body in files.items():
                zf.writestr(name, body)
        return buf.getvalue()
    return {"two_csvs.zip": z({"a.csv": good, "b.csv": good}), "empty.zip": z({}),
            "not_csv.zip": z({"readme.txt": b"hello"})}


# --- model files ----------------------------------------------------------------------------------------------

def model_payloads(model: Path) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """file name -> (bytes, what the error must name): broken or mismatched model files, all to be refused."""
    from fer_keras import modelfile

    raw = model.read_bytes()

    def with_record(record: bytes | None, drop=()):
        buf = io.BytesIO()
        with zipfile.ZipFile(model) as zin, zipfile.ZipFile(buf, "w") as zout:
            for item in zin.infolist():
                if item.filename != modelfile.META_NAME and item.filename not in drop:
                    zout.writestr(item, zin.read(item.filename))
            if record is not None:
                zout.writestr(modelfile.META_NAME, record)
        return buf.getvalue()
    meta = json.loads(zipfile.ZipFile(model).read(modelfile.META_NAME))
    return {
        "empty.keras": (b"", ()),
        "text.keras": (b"this is not a model\n", ()),
        "truncated.keras": (raw[: len(raw) // 2], ()),
        "random.keras": (np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes(), ()),
        "no_record.keras": (with_record(None), ()),
        "record_not_json.keras": (with_record(b"{not json"), ()),
        "record_empty.keras": (with_record(b"{}"), ()),
        "record_list.keras": (with_record(b"[1, 2, 3]"), ()),
        "record_3_classes.keras": (with_record(json.dumps(meta | {"class_names": ["a", "b", "c"]}).encode()), ()),
        "record_size_99.keras": (with_record(json.dumps(meta | {"input_size": [99, 99]}).encode()), ()),
        "record_huge.keras": (with_record(b'{"x": "' + b"a" * 3_000_000 + b'"}'), ()),
        "no_config.keras": (with_record(json.dumps(meta).encode(), drop=("config.json",)), ()),
        "no_weights.keras": (with_record(json.dumps(meta).encode(), drop=("model.weights.h5",)), ()),
        "empty.tflite": (b"", ()),
        "garbage.tflite": (b"TFL3" + b"\x00" * 64, ()),
        "text.tflite": (b"not a flatbuffer at all\n" * 10, ()),
        "model.h5": (b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, ()),
        "model.onnx": (b"\x08\x07\x12\x07pytorch", ()),
        "model.pt": (b"PK\x03\x04" + b"\x00" * 50, ()),
    }


# --- the corpus ---------------------------------------------------------------------------------------------

def build(folder: Path, model: Path, tflite: Path, photo: np.ndarray) -> list[Case]:
    """Write every payload under `folder` and return the cases (>= 150)."""
    folder = Path(folder)
    cases: list[Case] = []
    data_dir = folder / "csv"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, (payload, expect, names) in csv_payloads().items():
        (data_dir / name).write_bytes(payload)
        cases.append(Case(f"csv/{name}", ["info", "--data", str(data_dir / name)], expect, (name, *names)))
    for name, payload in zip_payloads().items():
        (data_dir / name).write_bytes(payload)
        cases.append(Case(f"csv/{name}", ["info", "--data", str(data_dir / name)], "error", (name,)))
    (data_dir / "empty_folder").mkdir(exist_ok=True)
    cases += [Case("csv/empty_folder", ["info", "--data", str(data_dir / "empty_folder")], "error", ("empty_folder",)),
              Case("csv/missing", ["info", "--data", str(data_dir / "nope.csv")], "error", ("nope.csv",))]

    model_dir = folder / "models"
    model_dir.mkdir(exist_ok=True)
    for name, (payload, names) in model_payloads(model).items():
        (model_dir / name).write_bytes(payload)
        for command in (["evaluate", str(model_dir / name), "--data", "sample"],
                        ["predict", str(folder / "img.png"), "--model", str(model_dir / name), "--out",
                         str(folder / "p_out")]):
            cases.append(Case(f"model/{command[0]}/{name}", command, "error", (name, *names)))
    cases += [Case("model/evaluate/missing", ["evaluate", str(model_dir / "gone.keras")], "error", ("gone.keras",)),
              Case("model/evaluate/folder", ["evaluate", str(model_dir)], "error", ("models",)),
              Case("model/evaluate/good.keras", ["evaluate", str(model), "--data", "sample"], "ok"),
              Case("model/evaluate/good.tflite", ["evaluate", str(tflite), "--data", "sample"], "ok"),
              Case("model/export/tflite_again", ["export", str(tflite)], "error", (tflite.name,)),
              Case("model/explain/missing_class", ["explain", str(folder / "img.png"), "--model", str(model),
                                                   "--class", "joy", "--out", str(folder / "x.png")], "error",
                   ("joy",))]

    images = write_images(folder / "images", photo)
    Image.fromarray(photo).save(folder / "img.png")
    for name, path in images.items():
        ok = name in IMAGES_OK
        cases.append(Case(f"image/{name}", ["predict", str(path), "--model", str(model), "--out",
                                            str(folder / "pred" / name.replace(".", "_"))],
                          "ok" if ok else "error", () if ok else (path.name,)))
    cases.append(Case("image/explain_truncated", ["explain", str(images["truncated.jpg"]), "--model", str(model),
                                                  "--out", str(folder / "e.png")], "error", ("truncated.jpg",)))

    video_dir = folder / "video"
    video_dir.mkdir(exist_ok=True)
    _write_video(video_dir / "good.avi", photo)
    videos = {"zero.mp4": b"", "text.avi": b"not a video\n" * 50, "truncated.avi": (video_dir / "good.avi").read_bytes()[:300],
              "random.mp4": np.random.default_rng(4).integers(0, 256, 3000, dtype=np.uint8).tobytes()}
    for name, payload in videos.items():
        (video_dir / name).write_bytes(payload)
        cases.append(Case(f"video/{name}", ["predict", str(video_dir / name), "--model", str(model), "--out",
                                            str(folder / "v_out")], "error", (name,)))
    (video_dir / "jpeg_named.mp4").write_bytes(encode(Image.fromarray(photo), "JPEG"))  # OpenCV: a 1-frame video
    cases.append(Case("video/jpeg_named.mp4", ["predict", str(video_dir / "jpeg_named.mp4"), "--model", str(model),
                                               "--out", str(folder / "v_out")], "ok"))
    cases.append(Case("video/good.avi", ["predict", str(video_dir / "good.avi"), "--model", str(model), "--out",
                                         str(folder / "v_out"), "--json", str(folder / "v_out" / "v.json")], "ok",
                      check=lambda f, out: (f / "v_out" / "v.json").is_file()))

    cases += flag_cases(folder, model)
    return cases


def _write_video(path: Path, photo: np.ndarray, frames: int = 6) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (photo.shape[1], photo.shape[0]), False)
    for _ in range(frames):
        writer.write(photo)
    writer.release()


# flag -> bad values (each refused with one line naming the flag, before any work)
TRAIN_FLAGS = {
    "--epochs": ["0", "-1", "x", "1.5", "nan"], "--batch-size": ["0", "-8", "many"],
    "--lr": ["nan", "inf", "-1e-3", "0", "fast"], "--val-fraction": ["1.5", "-0.1", "nan", "0.9"],
    "--input-size": ["0", "-1", "100", "x"], "--seed": ["-1", "99999999999", "x"],
    "--weight-decay": ["-1", "nan"], "--label-smoothing": ["1", "-0.1"], "--ema": ["0", "1", "1.5"],
    "--warmup": ["1", "-0.5"], "--budget": ["0m", "-5m", "soon", "infm"], "--time-limit": ["0", "-1", "nan"],
    "--devices": ["0", "-2", "some"], "--temperature": ["0", "-1"], "--alpha": ["-0.1", "1.5"],
    "--model": ["resnet9000"], "--step": ["99_magic"], "--augment": ["max"], "--tta": ["twenty_crop"],
    "--test-split": ["Validation"], "--optimizer": ["lion"], "--model-arg": ["pool", "=3"],
    "--labels": ["ferplus9", "fer2013:probability", "ferm:mean"], "--precision": ["float8"], "--width": ["0", "-4"],
}
OTHER_FLAGS = [
    (["export", "{model}", "--calibration", "0"], "--calibration"), (["export", "{model}", "--calibration", "-1"],
                                                                     "--calibration"),
    (["export", "{model}", "--mode", "int4"], "--mode"), (["demo", "--port", "0"], "--port"),
    (["demo", "--port", "99999"], "--port"), (["demo", "--port", "http"], "--port"),
    (["evaluate", "{model}", "--split", "Validation"], "--split"), (["explain", "{img}", "--model", "{model}",
                                                                    "--method", "magic"], "--method"),
    (["campaign", "run"], "--minutes"), (["campaign", "run", "--minutes", "0"], "--minutes"),
    (["campaign", "status", "--only", "nope"], "--only"), (["frobnicate"], "frobnicate"),
    (["train", "--resume", "{folder}/no_run"], "no_run"), (["train", "--teacher", "{folder}/gone.keras",
                                                            "--step", "16_tiny_distilled"], "gone.keras"),
]
OUTPUT_CASES = [  # an output path that cannot be written: refused before any work
    (["predict", "{img}", "--model", "{model}", "--json", "{dir}"], "--json"),
    (["predict", "{img}", "--model", "{model}", "--csv", "{file}/rows.csv"], "--csv"),
    (["predict", "{img}", "--model", "{model}", "--out", "{file}"], "--out"),
    (["train", "--results-json", "{dir}"], "--results-json"), (["train", "--out", "{file}"], "--out"),
    (["evaluate", "{model}", "--json", "{dir}"], "--json"), (["evaluate", "{model}", "--report-dir", "{file}"],
                                                             "--report-dir"),
    (["export", "{model}", "--out", "{dir}"], "--out"), (["explain", "{img}", "--model", "{model}", "--out",
                                                          "{file}/x.png"], "--out"),
]


def flag_cases(folder: Path, model: Path) -> list[Case]:
    (folder / "dir").mkdir(exist_ok=True)
    (folder / "file").write_text("x")
    fill = {"model": str(model), "img": str(folder / "img.png"), "folder": str(folder), "dir": str(folder / "dir"),
            "file": str(folder / "file")}
    cases = [Case(f"flag/train{flag}={value}", ["train", "--out", str(folder / "never"), f"{flag}={value}"], "error",
                  (flag,)) for flag, values in TRAIN_FLAGS.items() for value in values]
    cases += [Case("flag/" + " ".join(argv[:1] + argv[2:]).replace("{", "").replace("}", ""),
                   [a.format(**fill) for a in argv], "error", (what,)) for argv, what in OTHER_FLAGS]
    cases += [Case("output/" + " ".join(argv).replace("{", "").replace("}", ""), [a.format(**fill) for a in argv],
                   "error", (flag,)) for argv, flag in OUTPUT_CASES]
    return cases
