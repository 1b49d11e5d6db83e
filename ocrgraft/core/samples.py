"""Labelled text images rendered offline, for checking conversions on text rather than noise.

`ocrgraft samples DIR` writes text lines (`line_000.png` ...) with a PaddleOCR label file
(`labels.txt`: name<TAB>text) and, with `--pages`, pages of several lines for detectors. The font is the
one Pillow carries inside its own wheel (nothing is downloaded); words come from a fixed list, so the
same seed gives the same images on every machine.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.modelio import atomic_dir

WORDS = (
    "invoice total amount date number street road city station open closed exit entry price "
    "model serial batch lot expiry weight height width order account phone email office hotel "
    "north south east west paper print scan label plate camera reader sample check value "
    "OCR ONNX TensorRT Ascend Sophon PaddleOCR CRNN DBNet Hello World"
).split()


def text_for(rng: random.Random) -> str:
    """One to three words, sometimes with a number, in the case they are listed or capitalised."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.5:
        words.insert(rng.randint(0, len(words)), str(rng.randint(0, 99999)))
    words = [w.capitalize() if rng.random() < 0.3 else w for w in words]
    return " ".join(words)


def render_line(text: str, rng: random.Random, height: int = 48):
    """A dark text line on a light, slightly noisy background, tightly cropped like a detector's box."""
    from PIL import Image, ImageDraw, ImageFont

    size = rng.randint(int(height * 0.55), int(height * 0.75))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    pad_x, pad_y = rng.randint(4, 12), max(2, (height - (bottom - top)) // 2)
    paper, ink = rng.randint(200, 255), rng.randint(0, 60)
    image = Image.new("L", (right - left + 2 * pad_x, bottom - top + 2 * pad_y), paper)
    ImageDraw.Draw(image).text((pad_x - left, pad_y - top), text, font=font, fill=ink)
    pixels = np.asarray(image, np.float32) + np.random.default_rng(rng.randint(0, 1 << 30)).normal(
        0, 6, (image.height, image.width)
    )
    tint = np.array([rng.uniform(0.9, 1.0) for _ in range(3)], np.float32)
    rgb = np.clip(pixels[:, :, None] * tint, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def render_page(rng: random.Random, size: tuple[int, int] = (640, 480), lines: int = 6):
    """A light page with several text lines at random places (detector input, no labels)."""
    from PIL import Image

    page = Image.new("RGB", size, tuple(rng.randint(215, 255) for _ in range(3)))
    for _ in range(lines):
        line = render_line(text_for(rng), rng, height=rng.randint(28, 56))
        if line.width >= size[0]:
            continue
        page.paste(line, (rng.randint(0, size[0] - line.width), rng.randint(0, size[1] - line.height)))
    return page


def write_samples(folder: str | Path, count: int = 20, pages: int = 0, seed: int = 0) -> Path:
    """`count` labelled lines (and `pages` pages) into `folder`, which must be new or empty. They are
    written beside it and moved into place at the end, so an interrupted run leaves no partial set."""
    folder = Path(folder)
    if count < 1:
        raise OcrgraftError(f"{folder}: --count {count}: give at least 1 text line")
    if pages < 0:
        raise OcrgraftError(f"{folder}: --pages {pages}: give 0 or more pages")
    if folder.is_symlink() or folder.exists() and not folder.is_dir():
        raise OcrgraftError(f"{folder} exists and is not a folder; give a new folder for the samples")
    if folder.exists() and any(folder.iterdir()):
        raise OcrgraftError(f"{folder} is not empty; give a new folder for the samples")
    rng = random.Random(seed)
    labels = []
    with atomic_dir(folder, force=True) as tmp:  # force: an empty folder the user made is replaced
        for i in range(count):
            text = text_for(rng)
            render_line(text, rng).save(tmp / f"line_{i:03d}.png")
            labels.append(f"line_{i:03d}.png\t{text}")
        (tmp / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        if pages:
            (tmp / "pages").mkdir()
            for i in range(pages):
                render_page(rng).save(tmp / "pages" / f"page_{i:03d}.png")
    return folder
