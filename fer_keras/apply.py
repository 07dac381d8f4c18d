"""Applying a model to photos: read any image safely, find faces, crop them to the model's input.

`read_image` turns a file (jpg/png/webp/gif/bmp/tiff; RGB, RGBA, grey, palette, CMYK, 16-bit) into a grey
uint8 array, and every failure into one `ImageError` that names the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fer_keras import config

MAX_PIXELS = 40_000_000  # ~ 6300 x 6300; larger images are refused before decoding (memory)
MIN_SIDE = 16


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the fix."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Grey uint8 (H, W) from an image file; animated images give their first frame."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
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
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(img, dtype=np.float64)
                grey = (255 * (a - a.min()) / max(1.0, a.max() - a.min())).astype(np.uint8)
            else:
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
    return grey


def center_face(grey: np.ndarray, size: int = config.IMAGE_SIZE) -> np.ndarray:
    """Treat the whole image as a face crop: centre square, resized to size x size (uint8)."""
    import cv2

    h, w = grey.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = grey[top:top + side, left:left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)
