"""Fast, safe decoding of ECG page images into float arrays.

Speed comes from JPEG draft mode: libjpeg decodes straight to 1/2, 1/4 or 1/8 scale (and to
greyscale) instead of decoding the full page and shrinking it afterwards. Safety comes from
checking the pixel count in the header before any pixel is decoded, and from turning every
decoder failure into one :class:`ImageReadError` that names the file and says what to do.
"""
from __future__ import annotations

import io
import math
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "SUPPORTED_SUFFIXES",
    "ImageInfo",
    "ImageReadError",
    "load_image",
    "load_image_and_size",
    "read_file",
    "source_name",
    "probe_bytes",
    "read_header",
]

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

SUPPORTED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
# MPO is what some cameras write for JPEG; Pillow reports it as its own format.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF"})
# A real EDAN page is 3.5 MP and an A4 scan at 600 dpi 35 MP; 80 MP stays below Pillow's own
# warning threshold (89 MP) so that our message, not Pillow's, is the one users see.
DEFAULT_MAX_PIXELS = 80_000_000

_EXIF_ORIENTATION = 0x0112
# Pillow's decompression-bomb limit is a process-wide global; it is lifted only for the header
# parse inside this lock, so that our per-call max_pixels (and its message) decides.
_PIL_LIMIT_LOCK = threading.Lock()
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_WHITE = (255, 255, 255, 255)


class ImageReadError(ValueError):
    """An image could not be read; the message names the file and what to do about it."""

    def __init__(self, name: str, reason: str, hint: str):
        self.name, self.reason, self.hint = name, reason, hint
        super().__init__(f"{name}: {reason}; {hint}")

    def __reduce__(self):
        # Rebuilt from its three fields, so the error crosses process pools (joblib) intact.
        return type(self), (self.name, self.reason, self.hint)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, with width and height as the page is displayed (EXIF applied)."""

    width: int
    height: int
    mode: str
    format: str


def probe_bytes(data: bytes, name: str = "<bytes>", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check that ``data`` is a supported, decodable image and return its header facts.

    The whole entropy-coded stream is decoded (so truncation is caught), but JPEGs only at 1/8
    scale, which costs a few milliseconds for a full ECG page.
    """
    with _open(data, name, max_pixels) as im:
        info = ImageInfo(*_displayed_size(im), mode=im.mode, format=im.format)
        if im.format in ("JPEG", "MPO"):
            im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
        _decode(im, name)
    return info


def read_header(data: bytes, name: str = "<bytes>") -> ImageInfo:
    """The header's facts without decoding a pixel, whatever the pixel count: for a caller (a server)
    that refuses large pages with its own limit and status before anything is decoded."""
    with _open(data, name, max_pixels=sys.maxsize) as im:
        # Pillow looks for a PNG's EXIF after its pixels by decoding them all: a PNG's size is taken as stored
        # unless its EXIF came first (the pixel count is the same either way).
        as_stored = im.format == "PNG" and "exif" not in im.info
        width, height = im.size if as_stored else _displayed_size(im)
        return ImageInfo(width, height, mode=im.mode, format=im.format)


def load_image(
    source: ImageSource,
    size: tuple[int, int] | None = None,
    *,
    max_side: int | None = None,
    min_side: int | None = None,
    mode: str = "L",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode ``source`` into a float32 array with values in [0, 1].

    Args:
        source: a path, raw bytes, a binary file object, a PIL image or an array.
        size: exact output ``(width, height)``; the aspect ratio is not kept.
        max_side: alternatively, shrink so that the longer side is at most this (never enlarges).
        min_side: alternatively, the fastest reduction that keeps the longer side at least this:
            JPEG draft scaling or an integer box reduction, never a resampling pass.
        mode: ``"L"`` for a (H, W) greyscale array or ``"RGB"`` for (H, W, 3).
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).

    Transparent areas become white paper; 16-bit images keep their full range; CMYK, palette and
    bilevel images are converted; EXIF orientation is applied.
    """
    return load_image_and_size(source, size, max_side=max_side, min_side=min_side, mode=mode,
                               max_pixels=max_pixels)[0]


def load_image_and_size(
    source: ImageSource,
    size: tuple[int, int] | None = None,
    *,
    max_side: int | None = None,
    min_side: int | None = None,
    mode: str = "L",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`load_image`, plus the page's ``(width, height)`` as displayed, before any shrinking."""
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', not {mode!r}")
    if sum(option is not None for option in (size, max_side, min_side)) > 1:
        raise ValueError("give at most one of size, max_side and min_side")
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be positive, got {min_side}")
    name = source_name(source)
    if isinstance(source, np.ndarray):
        source = _array_to_image(source)
    elif not isinstance(source, Image.Image):
        with _open(source, name, max_pixels) as im:  # closed also when decoding fails
            shown = _displayed_size(im)  # before draft() shrinks im.size
            return _load(im, name, size, max_side, min_side, mode), shown
    return _load(source, name, size, max_side, min_side, mode), _displayed_size(source)


def _load(im: Image.Image, name: str, size, max_side, min_side, mode: str) -> np.ndarray:
    shown = _displayed_size(im)
    if min_side is not None:
        return _load_reduced(im, name, shown, min_side, mode)
    target = _target_size(shown, size, max_side)
    if im.format in ("JPEG", "MPO") and target is not None:
        raw_target = target[::-1] if _orientation(im) in _TRANSPOSING_ORIENTATIONS else target
        draft_mode = "L" if mode == "L" and im.mode == "RGB" else None
        im.draft(draft_mode, raw_target)
    _decode(im, name)
    im = _normalise_mode(ImageOps.exif_transpose(im), mode)
    if target is not None and im.size != target:
        # Box filtering when shrinking averages thin trace lines into grey instead of dropping them.
        shrinking = target[0] < im.width and target[1] < im.height
        im = im.resize(target, Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    return _to_float(im, mode)


def _load_reduced(im: Image.Image, name: str, shown: tuple[int, int], min_side: int, mode: str) -> np.ndarray:
    scale = min_side / max(shown)
    if im.format in ("JPEG", "MPO") and scale < 1:
        # draft() picks the smallest 1/2, 1/4 or 1/8 scale that is still at least this size.
        request = (math.ceil(im.width * scale), math.ceil(im.height * scale))
        im.draft("L" if mode == "L" and im.mode == "RGB" else None, request)
    _decode(im, name)
    im = _normalise_mode(ImageOps.exif_transpose(im), mode)
    factor = max(im.size) // min_side
    if factor >= 2:
        im = im.reduce(factor)  # integer box average: keeps thin traces as grey, and is cheap
    return _to_float(im, mode)


def read_file(path: str | os.PathLike) -> bytes:
    """The file's bytes, or an :class:`ImageReadError` naming it and saying what to check."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(str(path), "file not found", "check the path") from None
    except OSError as exc:
        raise ImageReadError(str(path), f"cannot be read ({exc.strerror or exc})",
                             "check the path and its permissions") from None


def source_name(source: ImageSource) -> str:
    """How messages name ``source``: its path, or what kind of in-memory image it is."""
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        return "<image>"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


def _open(source, name: str, max_pixels: int) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    try:
        if _byte_count(source) == 0:
            raise ImageReadError(name, "empty file (0 bytes)", "re-export or remove it")
        im = _open_without_pillow_limit(source)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(name, "file not found", "check the path") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            name, "not an image Pillow can read", "use JPEG, PNG, BMP or TIFF, or remove the file"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(name, f"corrupt image header ({exc})", "re-export or remove it") from None
    if im.format not in SUPPORTED_FORMATS:
        im.close()
        raise ImageReadError(
            name, f"unsupported image format {im.format}", "convert it to JPEG, PNG, BMP or TIFF"
        )
    pixels = im.width * im.height
    if pixels > max_pixels:
        im.close()
        raise ImageReadError(
            name,
            f"image is {im.width}x{im.height} ({_megapixels(pixels)} megapixels), above the "
            f"{_megapixels(max_pixels)} MP limit (possible decompression bomb)",
            "downscale it, or raise max_pixels if the file is trusted",
        )
    return im


def _byte_count(source) -> int | None:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stat().st_size
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes
    return None  # a stream of unknown length: Pillow will say if it is empty


def _open_without_pillow_limit(fp) -> Image.Image:
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g}"


def _decode(im: Image.Image, name: str) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated image data" if "truncat" in str(exc).lower() else f"corrupt image data ({exc})"
        raise ImageReadError(name, reason, "re-export or re-download it, or remove the file") from None


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block must not make a readable page unreadable
        return 1


def _displayed_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    return (h, w) if _orientation(im) in _TRANSPOSING_ORIENTATIONS else (w, h)


def _target_size(
    shown: tuple[int, int], size: tuple[int, int] | None, max_side: int | None
) -> tuple[int, int] | None:
    if size is not None:
        w, h = int(size[0]), int(size[1])
        if w < 1 or h < 1:
            raise ValueError(f"size must be positive, got {size}")
        return w, h
    if max_side is not None:
        scale = max_side / max(shown)
        if scale >= 1:
            return None
        return max(1, round(shown[0] * scale)), max(1, round(shown[1] * scale))
    return None


def _normalise_mode(im: Image.Image, mode: str) -> Image.Image:
    """Return ``im`` in ``mode``, or in "F" (floats in [0, 1]) for high-bit-depth greyscale."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: keep the full range instead of Pillow's clipping conversion to 8 bit.
        return Image.fromarray(np.asarray(im, dtype=np.float32) / 65535.0)
    if im.mode == "F":
        return im
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        # Transparent areas are blank paper, not black.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba)
    if im.mode == "CMYK" and mode == "L":
        im = im.convert("RGB")
    return im if im.mode == mode else im.convert(mode)


def _to_float(im: Image.Image, mode: str) -> np.ndarray:
    if im.mode == "F":
        grey = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
    array = np.asarray(im, dtype=np.uint8).astype(np.float32)
    array *= 1.0 / 255.0
    return array


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array, 0.0, 1.0) * 255.0 + 0.5
    elif array.dtype != np.uint8 and array.ndim == 2 and array.max(initial=0) > 255:
        return Image.fromarray(np.clip(array, 0, 65535).astype(np.uint16))  # 16-bit greyscale
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
