"""An explanation drawn on the page: evidence as colour over each lead panel, shares beside the names.

The page is shown as it was given (header included, faded: the model never saw it), each lead
panel's heat is carried from the normalised page to the panel's place on the source page, and
the summary line is printed above. PNG, at most :data:`MAX_SIDE` pixels across.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MAX_SIDE", "overlay_image", "write_overlay"]

MAX_SIDE = 1400
_BAR = 56  # px of the title bar above the page
_FADE = 0.45  # outside the lead area the page is mixed this much towards white
_FLOOR = 0.15  # heat below this share of the page's strongest is not drawn


def overlay_image(explanation, source) -> Image.Image:
    """The page of ``source`` (what ``explanation`` explains) with the evidence drawn on it."""
    from matplotlib import colormaps

    from features.imageio import load_image

    grey = load_image(source, max_side=MAX_SIDE)
    height, width = grey.shape
    page = explanation.page
    scale = (width / page.source_size[0], height / page.source_size[1])
    heat = np.zeros((height, width))
    for name, box in page.lead_boxes.items():
        target = _scaled(page.source_boxes[name], scale, (width, height))
        patch = _crop(explanation.heat, box)
        if target is None or patch is None:
            continue
        x0, y0, x1, y1 = target
        resized = np.asarray(Image.fromarray(patch.astype(np.float32)).resize((x1 - x0, y1 - y0), Image.BILINEAR))
        heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], resized)

    shown = grey.copy()
    area = _lead_area(page, scale, (width, height))
    faded = shown + _FADE * (1.0 - shown)
    inside = np.zeros_like(shown, dtype=bool)
    inside[area[1]:area[3], area[0]:area[2]] = True
    shown = np.where(inside, shown, faded)
    rgb = np.repeat(shown[..., None], 3, axis=2)
    colour = colormaps["inferno"](np.clip(heat, 0, 1))[..., :3]
    # Weak evidence is left uncoloured, so the colour points at where the evidence is.
    alpha = (0.65 * np.clip((heat - _FLOOR) / (1 - _FLOOR), 0, 1) ** 0.7)[..., None]
    rgb = (1 - alpha) * rgb + alpha * colour

    canvas = Image.new("RGB", (width, height + _BAR), "white")
    canvas.paste(Image.fromarray((rgb * 255).astype(np.uint8)), (0, _BAR))
    draw = ImageDraw.Draw(canvas)
    small = ImageFont.load_default(size=max(12, width // 90))
    for lead, share in explanation.lead_shares.items():
        target = _scaled(page.source_boxes[lead], scale, (width, height))
        if target is None:
            continue
        x0, y0, x1, y1 = target
        draw.rectangle((x0, y0 + _BAR, x1 - 1, y1 - 1 + _BAR), outline=(40, 90, 200), width=1)
        draw.text((x0 + 4, y0 + _BAR + 2), f"{lead} {share:.0%}", fill=(20, 60, 170), font=small)
    title = ImageFont.load_default(size=22)
    draw.text((10, 6), explanation.summary, fill="black", font=title)
    method = {"gradcam": "Grad-CAM", "lime": "LIME over lead panels"}.get(explanation.method, explanation.method)
    draw.text((10, 34), f"{method}; faded: outside the lead area, never seen by the model", fill=(90, 90, 90),
              font=small)
    return canvas


def write_overlay(explanation, source, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay_image(explanation, source).save(path, format="PNG", compress_level=3)  # optimize=True: 10x slower
    return path


def _crop(heat: np.ndarray, box) -> np.ndarray | None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    patch = heat[max(0, y0):y1, max(0, x0):x1]
    return patch if patch.size else None


def _scaled(box, scale: tuple[float, float], size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, int(round(box[0] * scale[0]))), max(0, int(round(box[1] * scale[1])))
    x1, y1 = min(size[0], int(round(box[2] * scale[0]))), min(size[1], int(round(box[3] * scale[1])))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _lead_area(page, scale, size) -> tuple[int, int, int, int]:
    boxes = np.array(list(page.source_boxes.values()))
    hull = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    return _scaled(hull, scale, size) or (0, 0, size[0], size[1])
