"""Images that are not ECG pages, for the page gate's tests and benchmarks (made here, never collected)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["not_ecg_pages"]


def not_ecg_pages(seed: int = 0) -> dict[str, np.ndarray]:
    """Blank paper, noise, a gradient, a bar chart, text, a 'photo' of shapes, a line plot and rows
    of sine waves (rows of 'traces' that are no ECG), each an image array at page size."""
    rng = np.random.default_rng(seed)
    pages = {"blank": np.full((1572, 2213), 255, np.uint8),
             "noise": rng.integers(0, 256, (1200, 1600)).astype(np.uint8),
             "gradient": np.tile(np.linspace(0, 255, 1600), (1200, 1)).astype(np.uint8)}
    bars = Image.new("L", (1600, 1200), 255)
    draw = ImageDraw.Draw(bars)
    for i in range(8):
        draw.rectangle([150 + i * 170, 1100 - int(rng.integers(100, 900)), 250 + i * 170, 1100], fill=60)
    draw.line([100, 1100, 1500, 1100], fill=0, width=3)
    pages["bar chart"] = np.asarray(bars)
    text = Image.new("L", (1600, 1200), 255)
    draw = ImageDraw.Draw(text)
    for y in range(80, 1150, 30):
        draw.text((80, y), "Lorem ipsum dolor sit amet, consectetur adipiscing elit " * 2, fill=0)
    pages["text"] = np.asarray(text)
    photo = Image.new("RGB", (1600, 1200), (120, 160, 200))
    draw = ImageDraw.Draw(photo)
    for _ in range(30):
        x, y, r = int(rng.integers(0, 1600)), int(rng.integers(0, 1200)), int(rng.integers(20, 200))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    pages["photo"] = np.asarray(photo)
    plot = Image.new("L", (1600, 1200), 255)
    walk = np.cumsum(rng.normal(0, 8, 1400)) + 600
    ImageDraw.Draw(plot).line(list(zip(range(100, 1500), walk)), fill=0, width=2)
    pages["line plot"] = np.asarray(plot)
    waves = Image.new("L", (2000, 1400), 255)
    draw = ImageDraw.Draw(waves)
    for row in range(4):  # four rows of sine waves: rows of 'traces', but no ECG
        xs = np.arange(100, 1900)
        draw.line(list(zip(xs, 300 + row * 280 + 40 * np.sin(xs / 30.0))), fill=0, width=2)
    pages["sine rows"] = np.asarray(waves)
    return pages
