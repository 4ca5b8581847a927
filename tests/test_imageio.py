"""Tests for features.imageio: load_image and probe_bytes.

Every image is made here with Pillow in tmp_path or in memory; nothing is read from outside.
"""
from __future__ import annotations

import gc
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from features.imageio import DEFAULT_MAX_PIXELS, ImageInfo, ImageReadError, load_image, load_image_and_size, probe_bytes

W, H = 200, 150  # default test page size (width, height)
EXIF_ORIENTATION = 0x0112


# ----------------------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def stored(path: Path) -> tuple[str, dict]:
    """Mode and info of an image file as Pillow opens it (closing the file)."""
    with Image.open(path) as im:
        return im.mode, dict(im.info)


def noisy_rgb(w: int = W, h: int = H, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def truncated_jpeg_bytes() -> bytes:
    data = encode(noisy_rgb(), "JPEG", quality=90)
    return data[: len(data) // 2]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height greyscale pixels, with a token IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def halves_l() -> Image.Image:
    """L image: left half black (0), right half white (255), a mid-grey (128) block at the top right."""
    im = Image.new("L", (W, H), 255)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, W // 2 - 1, H - 1], fill=0)
    draw.rectangle([W - 20, 0, W - 1, 19], fill=128)
    return im


def assert_unit_float(array: np.ndarray, shape: tuple[int, ...]) -> None:
    assert array.dtype == np.float32
    assert array.shape == shape
    assert float(array.min()) >= 0.0
    assert float(array.max()) <= 1.0


# ----------------------------------------------------------------------------- modes


def test_mode_L_png_exact_values(tmp_path):
    path = save(halves_l(), tmp_path / "grey.png")
    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert np.all(a[:, : W // 2] == 0.0)
    assert a[H - 1, W - 1] == 1.0
    assert a[5, W - 5] == pytest.approx(128 / 255, abs=1e-6)


def test_mode_L_to_rgb_output_repeats_grey(tmp_path):
    path = save(halves_l(), tmp_path / "grey.png")
    a = load_image(path, mode="RGB")
    assert_unit_float(a, (H, W, 3))
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    assert a[5, W - 5, 0] == pytest.approx(128 / 255, abs=1e-6)


def test_mode_RGB_values_in_L_and_RGB(tmp_path):
    im = Image.new("RGB", (W, H), (255, 255, 255))
    ImageDraw.Draw(im).rectangle([0, 0, 49, 49], fill=(255, 0, 0))
    path = save(im, tmp_path / "colour.png")

    rgb = load_image(path, mode="RGB")
    assert_unit_float(rgb, (H, W, 3))
    assert rgb[10, 10].tolist() == [1.0, 0.0, 0.0]
    assert rgb[100, 100].tolist() == [1.0, 1.0, 1.0]

    grey = load_image(path)
    assert_unit_float(grey, (H, W))
    # ITU-R 601 luma of pure red is 0.299.
    assert grey[10, 10] == pytest.approx(0.299, abs=2 / 255)
    assert grey[100, 100] == 1.0


def test_mode_RGBA_transparent_is_white(tmp_path):
    im = Image.new("RGBA", (W, H), (0, 0, 0, 0))  # fully transparent *black*
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 49, 49], fill=(0, 0, 0, 255))  # opaque black
    draw.rectangle([100, 0, 149, 49], fill=(0, 0, 0, 128))  # half-transparent black
    path = save(im, tmp_path / "alpha.png")

    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert a[100, 180] == pytest.approx(1.0)  # transparent -> paper white, not black
    assert a[10, 10] == pytest.approx(0.0)
    assert a[10, 120] == pytest.approx(127 / 255, abs=2 / 255)

    rgb = load_image(path, mode="RGB")
    assert_unit_float(rgb, (H, W, 3))
    assert rgb[100, 180].tolist() == [1.0, 1.0, 1.0]
    assert rgb[10, 10].tolist() == [0.0, 0.0, 0.0]


def test_mode_LA_transparent_is_white(tmp_path):
    im = Image.new("LA", (W, H), (0, 0))
    ImageDraw.Draw(im).rectangle([0, 0, 49, 49], fill=(0, 255))
    path = save(im, tmp_path / "la.png")
    assert stored(path)[0] == "LA"

    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert a[100, 180] == pytest.approx(1.0)
    assert a[10, 10] == pytest.approx(0.0)


def test_mode_P_palette_values(tmp_path):
    im = Image.new("P", (W, H), 0)
    im.putpalette([255, 255, 255, 0, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 49, 49], fill=1)  # black
    draw.rectangle([100, 0, 149, 49], fill=2)  # blue
    path = save(im, tmp_path / "palette.png")
    assert stored(path)[0] == "P"

    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert a[100, 180] == 1.0
    assert a[10, 10] == 0.0
    assert a[10, 120] == pytest.approx(0.114, abs=2 / 255)

    rgb = load_image(path, mode="RGB")
    assert rgb[10, 120].tolist() == [0.0, 0.0, 1.0]


def _p_with_transparent_index() -> Image.Image:
    """Palette image: index 0 is black but transparent, index 1 opaque black (top-left block)."""
    im = Image.new("P", (W, H), 0)
    im.putpalette([0, 0, 0, 0, 0, 0] + [0] * (254 * 3))
    ImageDraw.Draw(im).rectangle([0, 0, 49, 49], fill=1)
    return im


@pytest.mark.parametrize("via", ["png_file", "pil_image"])
def test_mode_P_with_transparency_is_white(tmp_path, via):
    if via == "png_file":
        source = save(_p_with_transparent_index(), tmp_path / "ptrans.png", transparency=0)
        mode, info = stored(source)
        assert mode == "P" and "transparency" in info
    else:
        source = _p_with_transparent_index()
        source.info["transparency"] = 0

    a = load_image(source)
    assert_unit_float(a, (H, W))
    assert a[100, 180] == pytest.approx(1.0)  # transparent index -> white paper, not black
    assert a[10, 10] == pytest.approx(0.0)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("TIFF", ".tif")])
def test_mode_CMYK(tmp_path, fmt, suffix):
    im = Image.new("CMYK", (W, H), (0, 0, 0, 0))  # no ink: white
    ImageDraw.Draw(im).rectangle([0, 0, 49, 49], fill=(0, 0, 0, 255))  # full black ink
    path = save(im, tmp_path / f"cmyk{suffix}", format=fmt)
    assert stored(path)[0] == "CMYK"

    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert a[100, 150] == pytest.approx(1.0, abs=0.03)
    assert a[20, 20] == pytest.approx(0.0, abs=0.03)

    rgb = load_image(path, mode="RGB")
    assert_unit_float(rgb, (H, W, 3))
    assert np.allclose(rgb[100, 150], 1.0, atol=0.03)
    assert np.allclose(rgb[20, 20], 0.0, atol=0.03)


def test_mode_1_bilevel(tmp_path):
    im = Image.new("1", (W, H), 1)
    ImageDraw.Draw(im).rectangle([0, 0, 49, 49], fill=0)
    path = save(im, tmp_path / "bilevel.png")
    assert stored(path)[0] == "1"

    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert set(np.unique(a).tolist()) == {0.0, 1.0}
    assert a[10, 10] == 0.0 and a[100, 100] == 1.0


def test_mode_I16_keeps_full_range(tmp_path):
    values = np.zeros((H, W), dtype=np.uint16)
    values[:, :50] = 65535
    values[:, 50:100] = 32768
    values[:, 100:150] = 1000  # would be clipped to 255 (-> 1.0) by an 8-bit conversion
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert stored(path)[0].startswith("I;16")

    a = load_image(path)
    assert_unit_float(a, (H, W))
    assert a[10, 10] == pytest.approx(1.0)
    assert a[10, 60] == pytest.approx(0.5, abs=1e-3)
    assert a[10, 120] == pytest.approx(1000 / 65535, abs=1e-4)
    assert a[10, 180] == 0.0

    rgb = load_image(path, mode="RGB")
    assert_unit_float(rgb, (H, W, 3))
    assert rgb[10, 60].tolist() == pytest.approx([0.5] * 3, abs=1e-3)

    small = load_image(path, max_side=100)
    assert_unit_float(small, (75, 100))
    assert small[10, 30] == pytest.approx(0.5, abs=1e-3)


def test_invalid_arguments_raise_value_error(tmp_path):
    path = save(halves_l(), tmp_path / "grey.png")
    with pytest.raises(ValueError, match="mode"):
        load_image(path, mode="CMYK")
    with pytest.raises(ValueError, match="at most one of size, max_side and min_side"):
        load_image(path, size=(10, 10), max_side=10)
    with pytest.raises(ValueError, match="positive"):
        load_image(path, size=(0, 10))


# ----------------------------------------------------------------------------- EXIF orientation


def exif6_jpeg(path: Path) -> Path:
    """A 200x150 stored JPEG, black block in the stored top-left corner, EXIF orientation 6."""
    im = Image.new("RGB", (W, H), "white")
    ImageDraw.Draw(im).rectangle([0, 0, 39, 29], fill="black")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    im.save(path, "JPEG", exif=exif, quality=95)
    return path


def test_exif_orientation_rotates_content(tmp_path):
    path = exif6_jpeg(tmp_path / "rotated.jpg")
    a = load_image(path)
    # Orientation 6: rotate 90 degrees clockwise for display -> (150 wide, 200 high),
    # and the stored top-left corner ends up at the top right.
    assert_unit_float(a, (W, H))
    assert a[:40, -30:].mean() < 0.05  # block now top-right (40 high, 30 wide)
    assert a[:30, :30].mean() > 0.95
    assert a[-40:, -30:].mean() > 0.95


@pytest.mark.parametrize("kw, shape", [({"max_side": 100}, (100, 75)), ({"size": (75, 100)}, (100, 75))])
def test_exif_orientation_with_resize_uses_displayed_size(tmp_path, kw, shape):
    path = exif6_jpeg(tmp_path / "rotated.jpg")
    a = load_image(path, **kw)
    assert_unit_float(a, shape)
    assert a[:20, -15:].mean() < 0.1
    assert a[:15, :15].mean() > 0.9


def test_probe_bytes_reports_displayed_size(tmp_path):
    path = exif6_jpeg(tmp_path / "rotated.jpg")
    info = probe_bytes(path.read_bytes(), "rotated.jpg")
    assert info == ImageInfo(width=H, height=W, mode="RGB", format="JPEG")


def test_probe_bytes_plain_png():
    info = probe_bytes(encode(halves_l(), "PNG"))
    assert info == ImageInfo(width=W, height=H, mode="L", format="PNG")


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", [(64, 40), (1, 1), (400, 300), (300, 100)])
def test_size_gives_exact_shape(tmp_path, size):
    path = save(halves_l(), tmp_path / "grey.png")
    a = load_image(path, size=size)
    assert_unit_float(a, (size[1], size[0]))
    rgb = load_image(path, size=size, mode="RGB")
    assert rgb.shape == (size[1], size[0], 3)


def test_size_keeps_content_where_it_belongs(tmp_path):
    path = save(halves_l(), tmp_path / "grey.png")
    a = load_image(path, size=(50, 30))
    assert a[:, :20].max() < 0.05  # left half stays black
    assert a[-10:, -20:].min() > 0.95  # bottom right stays white


@pytest.mark.parametrize(
    "stored, max_side, shape",
    [
        ((200, 150), 100, (75, 100)),
        ((150, 200), 100, (100, 75)),  # portrait: the height is the long side
        ((200, 150), 200, (150, 200)),  # already fits
        ((200, 150), 500, (150, 200)),  # never enlarges
        ((200, 150), 7, (5, 7)),
    ],
)
def test_max_side_keeps_aspect_never_enlarges(tmp_path, stored, max_side, shape):
    path = save(Image.new("L", stored, 200), tmp_path / "page.png")
    a = load_image(path, max_side=max_side)
    assert_unit_float(a, shape)
    assert np.allclose(a, 200 / 255, atol=1e-6)


@pytest.mark.parametrize("mode, extra", [("L", ()), ("RGB", (3,))])
def test_jpeg_draft_path_gives_right_size_and_content(tmp_path, mode, extra):
    im = Image.new("RGB", (1600, 1200), "white")
    ImageDraw.Draw(im).rectangle([0, 0, 799, 1199], fill="black")
    path = save(im, tmp_path / "big.jpg", quality=90)

    a = load_image(path, max_side=300, mode=mode)
    assert_unit_float(a, (225, 300) + extra)
    assert a[:, :140].max() < 0.05
    assert a[:, 160:].min() > 0.95

    b = load_image(path, size=(123, 77), mode=mode)
    assert_unit_float(b, (77, 123) + extra)


def test_jpeg_draft_matches_full_decode(tmp_path):
    path = save(noisy_rgb(1600, 1200, seed=3).resize((1600, 1200)), tmp_path / "noise.jpg", quality=90)
    fast = load_image(path, max_side=300)
    with Image.open(path) as im:
        slow = load_image(im.convert("L"), size=(300, 225))
    assert fast.shape == slow.shape == (225, 300)
    # Same picture: close on average (draft decoding is a different but faithful downscale).
    assert abs(float(fast.mean()) - float(slow.mean())) < 0.02


@pytest.mark.parametrize("fmt, stored, kw", [
    ("PNG", (200, 160), {"size": (50, 40)}),
    ("PNG", (200, 160), {"max_side": 50}),
    ("JPEG", (800, 640), {"max_side": 200}),  # 1/4 draft decode
])
def test_thin_line_survives_4x_downscale(tmp_path, fmt, stored, kw):
    w, h = stored
    im = Image.new("L", stored, 255)
    draw = ImageDraw.Draw(im)
    x, y = w // 2 + 1, h // 2 + 1
    draw.line([(x, 0), (x, h - 1)], fill=0)  # 1-px vertical line
    draw.line([(0, y), (w - 1, y)], fill=0)  # 1-px horizontal line
    path = save(im, tmp_path / f"line.{fmt.lower()}", format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))

    a = load_image(path, **kw)
    assert a.shape == (h // 4, w // 4)
    cols = np.median(a, axis=0)
    rows = np.median(a, axis=1)
    # The line's column/row is a clearly darker grey (about 0.75), the rest stays white.
    assert cols.min() < 0.85 and rows.min() < 0.85
    assert abs(int(np.argmin(cols)) - x // 4) <= 1
    assert abs(int(np.argmin(rows)) - y // 4) <= 1
    assert np.sort(cols)[1] > 0.95 and np.sort(rows)[1] > 0.95


# ----------------------------------------------------------------------------- inputs


@pytest.fixture
def reference(tmp_path):
    im = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 49, 49], fill=(0, 0, 0))
    draw.rectangle([60, 60, 119, 119], fill=(120, 120, 120))
    path = save(im, tmp_path / "ref.png")
    expected = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return path, im, expected


@pytest.mark.parametrize("kind", ["str", "Path", "bytes", "bytearray", "file", "BytesIO", "PIL",
                                  "uint8_rgb", "uint8_grey", "float_grey", "float_rgb"])
def test_every_input_kind(reference, kind):
    path, im, expected = reference
    rgb_u8 = np.asarray(im)
    source = {
        "str": lambda: str(path),
        "Path": lambda: path,
        "bytes": lambda: path.read_bytes(),
        "bytearray": lambda: bytearray(path.read_bytes()),
        "file": lambda: open(path, "rb"),
        "BytesIO": lambda: io.BytesIO(path.read_bytes()),
        "PIL": lambda: Image.open(path),
        "uint8_rgb": lambda: rgb_u8,
        "uint8_grey": lambda: np.asarray(im.convert("L")),
        "float_grey": lambda: expected.astype(np.float64),
        "float_rgb": lambda: rgb_u8.astype(np.float32) / 255.0,
    }[kind]()
    try:
        a = load_image(source)
        small = load_image(_rewind(source) if isinstance(source, io.IOBase) else source, size=(50, 30))
    finally:
        if hasattr(source, "close"):
            source.close()
    assert_unit_float(a, (H, W))
    assert np.allclose(a, expected, atol=1.01 / 255)
    assert small.shape == (30, 50)


def _rewind(fh):
    fh.seek(0)
    return fh


def test_array_input_rgb_mode_and_alpha():
    rgba = np.zeros((H, W, 4), dtype=np.uint8)  # transparent black
    rgba[:50, :50] = (0, 0, 0, 255)
    a = load_image(rgba)
    assert_unit_float(a, (H, W))
    assert a[10, 10] == 0.0 and a[100, 100] == 1.0
    single = np.full((H, W, 1), 0.25, dtype=np.float32)
    b = load_image(single, mode="RGB")
    assert_unit_float(b, (H, W, 3))
    assert np.allclose(b, 64 / 255, atol=1 / 255)


def test_float_array_is_clipped_to_unit_range():
    arr = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], dtype=np.float64)
    a = load_image(arr)
    assert a.tolist()[0] == pytest.approx([0.0, 0.0, 128 / 255, 1.0, 1.0], abs=1e-6)


def test_bad_array_shape_raises_value_error():
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((2, 2, 2, 2), dtype=np.uint8))


def test_uint16_array_keeps_full_range():
    """Regression (was a bug): a 16-bit array is cast with astype(uint8), which wraps modulo 256 (32768 -> 0)."""
    arr = np.zeros((H, W), dtype=np.uint16)
    arr[:, :50] = 65535
    arr[:, 50:100] = 32768
    arr[:, 100:150] = 256
    a = load_image(arr)
    assert_unit_float(a, (H, W))
    assert a[10, 10] == pytest.approx(1.0)
    assert a[10, 60] == pytest.approx(0.5, abs=1e-2)  # wraps to 0.0 today
    assert a[10, 120] == pytest.approx(256 / 65535, abs=1e-2)
    assert a[10, 180] == 0.0


# ----------------------------------------------------------------------------- errors


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


ERROR_CASES = {
    "truncated JPEG": (lambda d: _write(d / "cut_page.jpg", truncated_jpeg_bytes()), "truncated"),
    "text named .jpg": (lambda d: _write(d / "notes_x.jpg", b"this is just text, not a picture\n" * 5),
                        "not an image"),
    "empty file": (lambda d: _write(d / "zero_bytes.jpg", b""), "empty"),
    "GIF": (lambda d: save(Image.new("L", (W, H), 0), d / "anim_page.gif"), "unsupported image format GIF"),
    "missing file": (lambda d: d / "no_such_page.png", "file not found"),
    "bomb": (lambda d: _write(d / "bomb_page.png", png_header_only(12_000, 12_000)), "megapixels"),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_image_read_errors_naming_the_file(tmp_path, case):
    make, needle = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert path.name in str(err)
    assert needle in err.reason
    assert needle in str(err)
    assert err.hint and err.hint in str(err)
    if path.exists():
        # probe_bytes gives the same verdict on the raw bytes, naming what it was told.
        with pytest.raises(ImageReadError) as info2:
            probe_bytes(path.read_bytes(), path.name)
        assert path.name in str(info2.value)
        assert needle in info2.value.reason


def test_truncated_jpeg_also_caught_with_draft(tmp_path):
    path = _write(tmp_path / "cut.jpg", truncated_jpeg_bytes())
    with pytest.raises(ImageReadError, match="truncated") as info:
        load_image(path, max_side=50)
    assert "cut.jpg" in str(info.value)


def test_empty_bytes_and_stream():
    with pytest.raises(ImageReadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageReadError, match="empty"):
        probe_bytes(b"", "blank.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_real_bilevel_bomb_mentions_megapixels_and_default_limit(tmp_path):
    path = save(Image.new("1", (12_000, 12_000), 1), tmp_path / "huge_bilevel.png")
    assert path.stat().st_size < 100_000  # tiny file, huge header
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    msg = str(info.value)
    assert "huge_bilevel.png" in msg
    assert "12000x12000" in msg and "144 megapixels" in msg
    assert f"{DEFAULT_MAX_PIXELS / 1e6:.0f} MP" in msg


def test_max_pixels_guard_before_decoding(tmp_path):
    path = save(Image.new("L", (100, 100), 255), tmp_path / "small.png")
    with pytest.raises(ImageReadError, match="megapixels") as info:
        load_image(path, max_pixels=1000)
    assert "small.png" in str(info.value)
    with pytest.raises(ImageReadError, match="megapixels"):
        probe_bytes(path.read_bytes(), "small.png", max_pixels=1000)
    # At the limit it is fine.
    assert load_image(path, max_pixels=10_000).shape == (100, 100)
    assert probe_bytes(path.read_bytes(), max_pixels=10_000).width == 100


def test_max_pixels_message_states_the_limit(tmp_path):
    """Regression (was a bug): both numbers are rounded to whole megapixels, so a 1000-pixel limit and a
    10000-pixel image read "0 megapixels, above the 0 MP limit"."""
    path = save(Image.new("L", (100, 100), 255), tmp_path / "small.png")
    with pytest.raises(ImageReadError) as info:
        load_image(path, max_pixels=1000)
    msg = str(info.value)
    assert any(s in msg for s in ("1000", "1,000", "0.001")), msg
    assert "= 0 megapixels" not in msg, msg


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_above_pillow_limit_gets_our_message(tmp_path):
    """Regression (was a bug): above Pillow's hard limit (2 x 89.5 MP) Pillow's DecompressionBombError wins, so the
    message has no 'megapixels' / 'MP limit' and does not say max_pixels can be raised."""
    path = _write(tmp_path / "giant_header.png", png_header_only(20_000, 20_000))
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    msg = str(info.value)
    assert "giant_header.png" in msg
    assert "megapixels" in msg and "80 MP" in msg, msg


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_raised_max_pixels_admits_trusted_large_image(tmp_path):
    """Regression (was a bug): max_pixels cannot be raised above Pillow's own 179 MP hard limit, although the
    error hint says 'raise max_pixels if the file is trusted'."""
    path = save(Image.new("1", (14_000, 13_000), 1), tmp_path / "trusted_scan.png")  # 182 MP
    info = probe_bytes(path.read_bytes(), path.name, max_pixels=200_000_000)
    assert (info.width, info.height) == (14_000, 13_000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", ["truncated JPEG", "GIF", "max_pixels"])
def test_failed_load_closes_the_file(tmp_path, case):
    """Regression (was a bug): when a path opens but is then rejected (unsupported format, too many pixels) or fails
    to decode, the file Pillow opened is never closed; it stays open until garbage collection
    (a ResourceWarning, and on Windows a locked file the user is told to remove)."""
    if case == "max_pixels":
        path, kw = save(Image.new("L", (100, 100), 255), tmp_path / "small.png"), {"max_pixels": 1000}
    else:
        path, kw = ERROR_CASES[case][0](tmp_path), {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            load_image(path, **kw)
        except ImageReadError:
            pass
        else:
            pytest.fail("expected ImageReadError")
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


@pytest.mark.parametrize(
    "suffix, stored_size, min_side, shape",
    [
        (".jpg", (2213, 1572), 512, (393, 554)),  # JPEG draft at 1/4: the long side stays >= 512
        (".jpg", (2213, 1572), 2000, (1572, 2213)),  # 1/2 would fall short: full size
        (".png", (2213, 1572), 512, (393, 554)),  # no draft: an integer box reduction by 4
        (".png", (300, 200), 512, (200, 300)),  # never enlarges
    ],
)
def test_min_side_is_the_cheapest_reduction_that_keeps_the_long_side(tmp_path, suffix, stored_size, min_side, shape):
    im = Image.new("RGB", stored_size, "white")
    ImageDraw.Draw(im).rectangle([0, 0, stored_size[0] // 2 - 1, stored_size[1]], fill="black")
    path = save(im, tmp_path / f"page{suffix}")
    a, shown = load_image_and_size(path, min_side=min_side)
    assert_unit_float(a, shape)
    assert shown == stored_size  # the page's own size, not the reduced one
    half = shape[1] // 2
    assert a[:, : half - 2].max() < 0.05 and a[:, half + 2:].min() > 0.95


def test_read_errors_cross_process_boundaries_intact(tmp_path):
    import pickle

    path = tmp_path / "broken.jpg"
    path.write_bytes(truncated_jpeg_bytes())
    with pytest.raises(ImageReadError) as caught:
        load_image(path)
    again = pickle.loads(pickle.dumps(caught.value))  # what joblib does to a worker's exception
    assert (again.name, again.reason, again.hint, str(again)) == (
        caught.value.name, caught.value.reason, caught.value.hint, str(caught.value))
