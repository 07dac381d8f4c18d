"""Applying a model to photos: read any image safely, find faces, crop them to the model's input.

`read_image` turns a file (jpg/png/webp/gif/bmp/tiff; RGB, RGBA, grey, palette, CMYK, 16-bit) into a grey
uint8 array, and every failure into one `ImageError` that names the file and the fix.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from fer_keras import config

MAX_PIXELS = 40_000_000  # ~ 6300 x 6300; larger images are refused before decoding (memory)
MIN_SIDE = 16


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the fix."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Grey uint8 (H, W) from an image file; animated images give their first frame."""
    return _read_image(path, color=False)[0]


def read_image_and_color(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(grey uint8 (H, W) as read_image gives it, RGB uint8 (H, W, 3) for drawing on), decoded once."""
    return _read_image(path, color=True)


def _read_image(path: str | os.PathLike, color: bool) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused with a clear message instead
        return _decode(path, color)


def numeric_to_grey(a: np.ndarray, mode: str, path="<image>") -> np.ndarray:
    """uint8 grey from a 16-bit, 32-bit integer or float image, by the range its type implies: 16-bit full scale
    (0..65535) -> 0..255; float in [0, 1] -> x255; values already within 0..255 kept. Anything else (a float
    image in other units) is stretched from its min to its max, with a warning that says so."""
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise ImageError(f"{path}: the image holds no finite pixel values. Fix: re-export it as 8-bit JPEG or PNG.")
    a = np.nan_to_num(a, nan=0.0, posinf=finite.max(), neginf=finite.min())
    low, high = float(finite.min()), float(finite.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and 255 < high <= 65535):
        scaled = a / 257.0
    elif mode == "F" and low >= 0 and high <= 1.0:
        scaled = a * 255.0
    elif low >= 0 and high <= 255:
        scaled = a
    else:
        warnings.warn(f"{path}: {mode} pixel values span {low:g}..{high:g}, not a standard range; stretched "
                      "to 0..255 (brightness is relative to this image only).", stacklevel=3)
        scaled = 255.0 * (a - low) / max(high - low, 1e-12)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _decode(path: str | os.PathLike, color: bool) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image. Fix: pass the image files inside it.")
    if not path.is_file():
        raise ImageError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes). Fix: copy or download it again.")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{path}: {w}x{h} pixels is more than the {MAX_PIXELS:,} the kit decodes. "
                                 "Fix: downscale it first (faces need only ~100 px).")
            img.seek(0)
            img = ImageOps.exif_transpose(img)  # a phone photo's orientation tag: upright, as viewers show it
            rgb = None
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                grey = numeric_to_grey(np.asarray(img, dtype=np.float64), img.mode, path)
                if color:
                    rgb = np.repeat(grey[..., None], 3, axis=-1)
            else:
                if color:  # drawn as the file looks (alpha dropped), not on the white the grey face uses
                    rgb = np.asarray(img.convert("RGB"))
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(white, rgba)
                grey = np.asarray(img.convert("L"), dtype=np.uint8)
    except ImageError:
        raise
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image the kit can read (a PDF or text renamed .jpg?). "
                         "Fix: export it as JPEG or PNG.") from err
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: too many pixels to decode safely ({err}). Fix: downscale it first.") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: the image data is damaged or truncated ({err}). "
                         "Fix: re-save or re-download the image.") from err
    if min(grey.shape) < MIN_SIDE:
        raise ImageError(f"{path}: {grey.shape[1]}x{grey.shape[0]} pixels is too small for a face "
                         f"(at least {MIN_SIDE}x{MIN_SIDE}). Fix: use a larger photo.")
    return grey, rgb


def center_face(grey: np.ndarray, size: int = config.IMAGE_SIZE) -> np.ndarray:
    """Treat the whole image as a face crop: centre square, resized to size x size (uint8)."""
    import cv2

    h, w = grey.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = grey[top:top + side, left:left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


# ------------------------------------------------------------------ faces in photos
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


# The shipped models by name (`predict --model accurate`): 'tiny' is the default, 'accurate' the mid-size option.
# scripts/ship_model.py writes the name into the file's record (shipped_as); a file without one is 'tiny'.
SHIPPED = ("tiny", "accurate")


def shipped_name(path) -> str:
    """The name a shipped .keras file answers to (its record's shipped_as; 'tiny' for a file without one)."""
    from fer_keras import modelfile

    return modelfile.read_metadata(path).get("shipped_as", "tiny")


def shipped_model(name: str = "tiny", suffix: str = ".keras", folder=None) -> Path:
    """The shipped model called `name`: its .keras file in pretrained/, or (suffix='.tflite') its int8 export."""
    if name not in SHIPPED:
        raise ImageError(f"no shipped model is called {name!r}. Fix: choose one of {', '.join(SHIPPED)}, or pass "
                         "a .keras or .tflite file.")
    folder = Path(folder or PRETRAINED_DIR)
    for path in sorted(folder.glob("*.keras")):
        if shipped_name(path) == name:
            return path if suffix == ".keras" else path.with_name(f"{path.stem}_int8.tflite")
    raise ImageError(f"no {name!r} model is shipped in {folder}. Fix: " + (
        "drop --model to use the default, or pass a .keras or .tflite file." if name != "tiny" else
        "pass --model MODEL.keras (train one with `python -m fer_keras train`)."))


def default_model_path() -> Path:
    """The model the demo and `predict` use without --model: the shipped 'tiny' model."""
    return shipped_model("tiny")


def resolve_model(model=None) -> Path:
    """A --model value as a file: None -> the default; a shipped name ('accurate') -> its file; else the path."""
    if model is None:
        return default_model_path()
    if str(model) in SHIPPED and not Path(model).exists():
        return shipped_model(str(model))
    return Path(model)


def _cascade():
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(folder) / "haarcascade_frontalface_default.xml"
    # OpenCV 5 moved CascadeClassifier and its models to opencv-contrib (opencv/opencv#25198); seen on a machine
    # with opencv-python-headless 5.0.0.93
    detector = cv2.CascadeClassifier(str(path)) if hasattr(cv2, "CascadeClassifier") and folder else None
    if detector is None or detector.empty():
        raise ImageError(f"OpenCV {cv2.__version__} has no Haar face detector (looked for {path}). Fix: pip install "
                         "'opencv-python-headless<5' (OpenCV 5 moved the Haar cascades to opencv-contrib).")
    return detector


_DETECTOR = None


def detect_faces(grey: np.ndarray, min_face: int = 24) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h), largest first, from OpenCV's bundled Haar cascade (offline)."""
    global _DETECTOR
    if _DETECTOR is None:
        _DETECTOR = _cascade()
    side = max(min_face, min(grey.shape) // 25)
    boxes = _DETECTOR.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3])


def crop_faces(grey: np.ndarray, boxes, size: int = config.IMAGE_SIZE, margin: float = 0.1) -> np.ndarray:
    """uint8 (N, size, size) face crops, each box grown by `margin` per side (FER2013 crops show the
    whole head), clipped to the image."""
    import cv2

    h, w = grey.shape
    crops = []
    for x, y, bw, bh in boxes:
        dx, dy = int(bw * margin), int(bh * margin)
        x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(w, x + bw + dx), min(h, y + bh + dy)
        crops.append(cv2.resize(grey[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(crops) if crops else np.zeros((0, size, size), np.uint8)


class Recognizer:
    """A kit model (.keras or .tflite) applied to whole photos: detect, crop, batch-predict."""

    def __init__(self, model_path=None):
        from fer_keras import modelfile

        self.path = resolve_model(model_path)
        self.loaded = modelfile.load_model(self.path)
        self.class_names = list(self.loaded.metadata["class_names"])
        self.input_size = int(self.loaded.metadata["input_size"][0])

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for uint8 48x48 faces (all faces of a frame in one batch)."""
        from fer_keras import evaluation

        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return evaluation.predict_proba(self.loaded.predict, faces, self.input_size)

    def analyse(self, grey: np.ndarray) -> list[dict]:
        """[{box, label, confidence, probabilities}] for every face found in a grey image."""
        boxes = detect_faces(grey)
        probs = self.predict_faces(crop_faces(grey, boxes))
        return [{"box": list(box), "label": self.class_names[int(p.argmax())], "confidence": float(p.max()),
                 "probabilities": {n: float(v) for n, v in zip(self.class_names, p)}}
                for box, p in zip(boxes, probs)]


def annotate(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """RGB uint8 copy of `image` (grey or RGB) with a green box, the label and a confidence bar per face."""
    import cv2

    out = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    scale = max(0.4, min(out.shape[:2]) / 600)
    for face in faces:
        x, y, w, h = face["box"]
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 200, 0), max(1, int(2 * scale)))
        text = f"{face['label']} {face['confidence']:.2f}"
        cv2.putText(out, text, (x, max(12, y - int(8 * scale))), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 200, 0),
                    max(1, int(2 * scale)), cv2.LINE_AA)
        bar_y = min(out.shape[0] - 4, y + h + int(6 * scale))
        cv2.rectangle(out, (x, bar_y), (x + int(w * face["confidence"]), bar_y + max(3, int(5 * scale))),
                      (0, 200, 0), -1)
    return out


VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def output_path(path, out_dir, suffix: str, taken: set | None = None) -> Path:
    """out_dir/<stem>_annotated<suffix>; when that name is already `taken` in this run (a.jpg and a.png, or two
    folders' face.jpg), <stem>_annotated_2<suffix>, _3, ...: no output overwrites another. Adds it to `taken`."""
    stem = Path(path).stem
    out, n = Path(out_dir) / f"{stem}_annotated{suffix}", 1
    while taken is not None and str(out) in taken:
        n += 1
        out = Path(out_dir) / f"{stem}_annotated_{n}{suffix}"
    if taken is not None:
        taken.add(str(out))
    return out


def predict_image(path, recognizer: Recognizer, out_dir, taken: set | None = None) -> dict:
    """Analyse one image file; write the annotated copy (or an unchanged copy if no face) to out_dir."""
    from PIL import Image

    grey, rgb = read_image_and_color(path)
    faces = recognizer.analyse(grey)
    out = output_path(path, out_dir, ".png", taken)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(annotate(rgb, faces)).save(out)
    note = None if faces else "no face found; the image is written unchanged"
    return {"file": str(path), "output": str(out), "faces": faces, "note": note}


def predict_video(path, recognizer: Recognizer, out_dir, every: int = 1, progress: bool = True,
                  taken: set | None = None) -> dict:
    """Analyse a video frame by frame (every `every`-th frame), write an annotated .mp4 and per-frame faces."""
    import cv2
    import keras

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(f"{path}: OpenCV cannot open this video. Fix: convert it to MP4 (H.264).")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out = output_path(path, out_dir, ".mp4", taken)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer, frames, index = None, [], 0
    bar = keras.utils.Progbar(total, unit_name="frame") if progress else None
    faces = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % every == 0:
            faces = recognizer.analyse(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
            frames.append({"frame": index, "faces": faces})
        rgb = annotate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), faces)
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (rgb.shape[1], rgb.shape[0]))
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        index += 1
        if bar is not None:
            bar.update(index)
    cap.release()
    if writer is not None:
        writer.release()
    if index == 0:
        raise ImageError(f"{path}: no frames could be read. Fix: check the file plays, or convert it to MP4.")
    return {"file": str(path), "output": str(out), "frames": index, "analysed": frames}


def predict_paths(paths, model_path=None, out_dir="predictions", progress: bool = True) -> list[dict]:
    """`fer-keras predict`: images and videos -> annotated copies + one record per file (errors included,
    as {'file', 'error'}, so one bad file does not stop the rest)."""
    recognizer = Recognizer(model_path)
    records, taken = [], set()
    for path in paths:
        try:
            if Path(path).suffix.lower() in VIDEO_SUFFIXES:
                records.append(predict_video(path, recognizer, out_dir, progress=progress, taken=taken))
            else:
                records.append(predict_image(path, recognizer, out_dir, taken=taken))
        except ImageError as err:
            records.append({"file": str(path), "error": str(err)})
    return records


def records_table(records: list[dict]):
    """One row per face (image files) with its box and probabilities: for the CSV."""
    import pandas as pd

    rows = []
    for r in records:
        for i, face in enumerate(r.get("faces", [])):
            rows.append({"file": r["file"], "face": i, "x": face["box"][0], "y": face["box"][1], "w": face["box"][2],
                         "h": face["box"][3], "label": face["label"], **face["probabilities"]})
        for frame in r.get("analysed", []):
            for i, face in enumerate(frame["faces"]):
                rows.append({"file": r["file"], "frame": frame["frame"], "face": i, "x": face["box"][0],
                             "y": face["box"][1], "w": face["box"][2], "h": face["box"][3], "label": face["label"],
                             **face["probabilities"]})
    return pd.DataFrame(rows)


def sample_photo(n: int = 6, seed: int = 0, face_px: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A grey 'group photo' built from bundled sample faces (PublicTest) on a flat background, and their
    labels: for the demo notebook and tests, without downloading anything."""
    import cv2

    from fer_keras import data

    test = data.load_sample(["PublicTest"])["PublicTest"]
    pick = np.random.default_rng(seed).choice(len(test.y), n, replace=False)
    cols = min(n, 3)
    rows = -(-n // cols)
    gap = face_px // 2
    photo = np.full((rows * (face_px + gap) + gap, cols * (face_px + gap) + gap), 150, np.uint8)
    for k, i in enumerate(pick):
        r, c = divmod(k, cols)
        y, x = gap + r * (face_px + gap), gap + c * (face_px + gap)
        photo[y:y + face_px, x:x + face_px] = cv2.resize(test.x[i], (face_px, face_px), interpolation=cv2.INTER_CUBIC)
    return photo, test.y[pick]


def throughput(recognizer: Recognizer, faces: np.ndarray, seconds: float = 3.0) -> float:
    """Faces per second of recognizer.predict_faces on a batch of 48x48 faces (after one warm-up call)."""
    import time

    recognizer.predict_faces(faces)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        recognizer.predict_faces(faces)
        count += len(faces)
    return count / (time.perf_counter() - start)
