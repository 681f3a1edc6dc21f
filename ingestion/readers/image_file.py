"""Read one PNG/JPEG radiograph into the same [0, 1] image the DICOM X-ray reader produces.

Why: most public chest X-ray sets (MIMIC-CXR-JPG, CheXpert, the COVID-19
image collection) ship display-ready PNG/JPEG, not DICOM. Such a file has
no patient id, no pixel spacing and no VOI: it is already windowed for
display, bright = dense. So the grey levels are scaled by the range the bit
depth allows (8-bit / 255, 16-bit / 65535), never by the image's own min and
max, which keeps intensities comparable between images, as in the DICOM path.

What comes from the file is only the pixels: EXIF, PNG text chunks, ICC
profiles and comments are never read into the metadata (they can hold names,
dates and device serials). Burned-in text in the pixels is not detected.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ingestion.readers.records import NormalisedItem, QuarantineError

MAX_PIXELS = 1 << 26
"""67 million pixels (8192 x 8192): four times the largest detector radiograph (~4300 x 4300). A PNG/JPEG header
declaring more is refused before decoding: a few-kB decompression bomb would otherwise make the decoder allocate
gigabytes (the float copy of 1 << 26 pixels is already 256 MiB)."""

FORMATS: tuple[str, ...] = ("PNG", "JPEG")
"""Formats read; Pillow would also open TIFF/GIF/BMP by content, but nothing else is tested here."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as in the DICOM X-ray reader


def _open(path: Path, name: str) -> Image.Image:
    """Open the file lazily (header only) and refuse what is not a PNG/JPEG or is too large to decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise QuarantineError(f"{name}: the image header declares too many pixels to decode safely ({exc}); "
                              "a decompression bomb or a corrupt file: re-export the image") from None
    except UnidentifiedImageError:
        raise QuarantineError(f"{name}: not a readable PNG/JPEG image (the content is not an image or is "
                              "damaged); re-export it or move it out of the source folder") from None
    if image.format not in FORMATS:
        fmt = image.format
        image.close()
        raise QuarantineError(f"{name}: the content is {fmt}, not PNG/JPEG as the extension says; "
                              "convert it to PNG or move it out of the source folder")
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        image.close()
        raise QuarantineError(f"{name}: the header declares {width} x {height} pixels, more than the "
                              f"{MAX_PIXELS:,} clinfuse decodes from one image (a decompression bomb or a corrupt "
                              "header); re-export the image at a radiograph's size")
    return image


def _decode(image: Image.Image, name: str) -> Image.Image:
    """Decode the pixels and apply the EXIF orientation (a phone photo of a film is often stored rotated)."""
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise QuarantineError(f"{name}: the pixel data could not be decoded ({type(exc).__name__}: {exc}); "
                              "the file is truncated or damaged: copy or export it again") from None


def to_unit_grey(image: Image.Image) -> tuple[np.ndarray, dict[str, Any]]:
    """Greyscale float32 in [0, 1] from any Pillow mode, with what was done to get there.

    Colour (RGB, CMYK, palette) becomes BT.601 luminance; an alpha channel is
    dropped (radiographs are opaque; compositing on a colour would invent
    intensities); 16-bit grey is divided by 65535, 8-bit by 255, 1-bit maps
    to 0/1; 32-bit float is min-max scaled, the only case without a fixed range.
    """
    mode = image.mode
    info: dict[str, Any] = {"source_mode": mode, "alpha_dropped": mode in ("LA", "La", "RGBA", "RGBa", "PA")
                            or (mode == "P" and "transparency" in image.info)}
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        info.update(bit_depth=32, scaling="min-max (floating-point image)")
        return np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0), info
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I: 16-bit greyscale PNG
        values = np.asarray(image).astype(np.float32)
        bits = 16 if mode.startswith("I;16") or float(values.max(initial=0)) <= 65535 else 32
        info.update(bit_depth=bits, scaling=f"bit depth (/{2 ** bits - 1})")
        return np.clip(values / float(2**bits - 1), 0.0, 1.0), info
    if mode in ("L", "LA", "La", "1"):
        grey = np.asarray(image.convert("L"), dtype=np.float32)
        info.update(bit_depth=1 if mode == "1" else 8, scaling="bit depth (/255)")
        return grey / 255.0, info
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    info.update(bit_depth=8, scaling="bit depth (/255), colour converted to luminance (BT.601)")
    return np.clip(rgb @ _LUMA / 255.0, 0.0, 1.0), info


def _spacing(spacing_mm: tuple[float, float] | None) -> tuple[list[float] | None, str]:
    if spacing_mm is None:
        return None, "unknown (PNG/JPEG carry no calibrated spacing and no sidecar value was given)"
    return [float(spacing_mm[0]), float(spacing_mm[1])], "sidecar table"


def read_image_file(path: Path | str, shape: tuple[int, int], patient_id: str | None, *,
                    view: str = "", spacing_mm: tuple[float, float] | None = None) -> NormalisedItem:
    """Read one PNG/JPEG radiograph to the contract's ``shape`` float32 array in [0, 1], bright = dense.

    ``patient_id`` (from the sidecar table, or the file stem) stays in memory
    for the driver to pseudonymise. ``view`` and ``spacing_mm`` (row, column)
    come from the sidecar; without a spacing it is recorded as unknown.
    Raises QuarantineError with an actionable reason for bad input.
    """
    from ingestion.readers.xray_image import _resize  # the DICOM reader's resize: same arrays from both paths

    name = os.fspath(path)
    if not patient_id or not str(patient_id).strip():
        raise QuarantineError(f"{name}: no patient id for this image (its sidecar row has none)")
    with _open(Path(path), name) as opened:
        fmt = opened.format
        image = _decode(opened, name)
        grey, info = to_unit_grey(image)
    spacing, spacing_source = _spacing(spacing_mm)
    array = _resize(grey, shape)
    metadata: dict[str, Any] = {
        "file_format": fmt,
        "photometric": "display greyscale (bright = dense)",
        "inverted": False,
        "n_frames": 1,
        "original_shape": [int(grey.shape[0]), int(grey.shape[1])],
        "pixel_spacing_mm": spacing,
        "pixel_spacing_source": spacing_source,
        "view_position": view,
        "burned_in_annotation": "unknown (pixels are not checked for text)",
        "output_shape": list(array.shape),
        **info,
    }
    return NormalisedItem(modality="xray", original_patient_id=str(patient_id), array=array,
                          metadata=metadata)
