"""Real images as model inputs: a folder of jpg/png/bmp files, their labels, and the recipe's
preprocessing (resize with or without keeping the ratio, padding, scale/mean/std, channel order, layout).

Labels come from a PaddleOCR-style label file in the folder (`name<TAB>text` per line; `labels.txt`,
`label.txt`, `rec_gt.txt` or `gt.txt`, or one given by path), from the file names (`hello_03.png` reads
"hello"), or not at all (detectors, or a recognizer compared only against its framework model).

The [preprocess] table of a recipe:

    color = "bgr"          # rgb | bgr | gray: the channel order the model reads
    scale = 255.0          # x / scale, then (x - mean) / std, per channel
    mean = [0.5, 0.5, 0.5]
    std = [0.5, 0.5, 0.5]
    layout = "NCHW"        # or NHWC
    resize = "keep-ratio"  # or "stretch" (to the opt shape's H x W)
    multiple = 32          # H and W rounded to a multiple (keep-ratio)
    pad_width = 320        # pad on the right (0 after normalization) to at least this width

keep-ratio with a fixed input height (a recognizer) scales to that height and takes the width the ratio
gives (PaddleOCR's and CRNN's resize); with a dynamic height (a detector) it fits the image inside the
largest shape of the range. Either stays inside the range's min / max.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.safeload import plain_arrays

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
PIXEL_SCALE = 255.0  # [preprocess] scale when the recipe gives none: x / 255
LABEL_FILES = ("labels.txt", "label.txt", "rec_gt.txt", "gt.txt")


@dataclass
class Item:
    """One image: its name (relative to the folder), its label (None: unlabelled) and the model input."""

    name: str
    label: str | None
    feeds: dict[str, np.ndarray]
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.feeds.values())).shape


def list_images(folder: str | Path, labels: str | Path | None = "auto", limit: int | None = None):
    """[(path, label or None)] sorted by name. `labels`: 'auto' (a label file if the folder has one),
    'names' (from file names), 'none', or a label file's path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OcrgraftError(f"--images {folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise OcrgraftError(f"--images {folder}: no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files in it")
    table: dict[str, str] | None = None
    if labels == "auto":
        found = [folder / n for n in LABEL_FILES if (folder / n).is_file()]
        table = read_label_file(found[0]) if found else None
    elif labels not in ("names", "none", None):
        table = read_label_file(Path(labels))
    out = []
    for path in paths:
        rel = path.relative_to(folder).as_posix()
        if table is not None:
            label = table.get(rel, table.get(path.name))
            if label is None:
                continue  # an image the label file does not list is not part of the set
        elif labels == "names":
            label = _label_from_name(path.stem)
        else:
            label = None
        out.append((path, label))
    if table is not None and not out:
        raise OcrgraftError(f"--images {folder}: the label file names none of the images in it")
    return out[:limit] if limit else out


def read_label_file(path: Path) -> dict[str, str]:
    """PaddleOCR's `image<TAB>text` lines; the image as written and by its base name."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OcrgraftError(f"label file {path}: cannot be read ({exc})") from None
    table = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, tab, text = line.partition("\t")
        if not tab:
            raise OcrgraftError(f"label file {path}, line {n}: expected 'image<TAB>text'")
        table[name] = text
        table.setdefault(Path(name).name, text)
    return table


def _label_from_name(stem: str) -> str:
    """`hello_03` -> `hello`: a trailing _<digits> only tells files with the same text apart."""
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() and head else stem


@dataclass
class Preprocess:
    """A recipe's [preprocess] for one image input whose H, W may vary within [h_range], [w_range]."""

    input: str
    h_range: tuple[int, int]
    w_range: tuple[int, int]
    opt_hw: tuple[int, int]
    channels: int = 3
    color: str = "rgb"
    scale: float = PIXEL_SCALE
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    resize: str = "keep-ratio"
    multiple: int = 1
    pad_width: int = 0

    @classmethod
    def from_recipe(cls, table: dict | None, shapes: dict[str, list[tuple[int, ...]]]) -> Preprocess:
        """`shapes`: the shape range per input ({name: [min, opt, max]}); the image input is the one the
        table names, else the first of rank 4."""
        table = dict(table or {})
        layout = str(table.get("layout", "NCHW")).upper()
        if layout not in ("NCHW", "NHWC"):
            raise OcrgraftError(f"[preprocess] layout '{layout}': expected NCHW or NHWC")
        name = table.get("input") or next((k for k, v in shapes.items() if len(v[0]) == 4), None)
        if name not in shapes or len(shapes[name][0]) != 4:
            raise OcrgraftError(
                "images need a 4-D image input with a shape range (--shapes or the recipe's [inputs]); "
                f"inputs known: {', '.join(f'{k} (rank {len(v[0])})' for k, v in shapes.items()) or 'none'}"
            )
        dims = shapes[name]
        c_axis, h_axis, w_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
        color = str(table.get("color", "gray" if dims[0][c_axis] == 1 else "rgb")).lower()
        if color not in ("rgb", "bgr", "gray"):
            raise OcrgraftError(f"[preprocess] color '{color}': expected rgb, bgr or gray")
        resize = str(table.get("resize", "keep-ratio"))
        if resize not in ("keep-ratio", "stretch"):
            raise OcrgraftError(f"[preprocess] resize '{resize}': expected keep-ratio or stretch")
        opt = dims[len(dims) // 2]
        return cls(
            input=name,
            h_range=(min(d[h_axis] for d in dims), max(d[h_axis] for d in dims)),
            w_range=(min(d[w_axis] for d in dims), max(d[w_axis] for d in dims)),
            opt_hw=(opt[h_axis], opt[w_axis]),
            channels=dims[0][c_axis],
            color=color,
            scale=float(table.get("scale", PIXEL_SCALE)),
            mean=tuple(float(m) for m in _list(table.get("mean", [0.0]))),
            std=tuple(float(s) for s in _list(table.get("std", [1.0]))),
            layout=layout,
            resize=resize,
            multiple=max(1, int(table.get("multiple", 1))),
            pad_width=int(table.get("pad_width", 0)),
        )

    def pinned(self, shape: tuple[int, ...]) -> Preprocess:
        """The same preprocessing for an artifact compiled at one shape: for a recognizer that height and
        width, the ratio kept and padded on the right (PaddleOCR's fixed-width inference does the same);
        for a detector the page stretched to it (the reference then runs at that shape too)."""
        h, w = (shape[2], shape[3]) if self.layout == "NCHW" else (shape[1], shape[2])
        if self.h_range[0] != self.h_range[1]:  # a detector: the page stretched to the compiled size
            return dataclasses.replace(self, resize="stretch", h_range=(h, h), w_range=(w, w), opt_hw=(h, w))
        low = min(self.w_range[0], w)  # narrower lines keep their width and are padded, not stretched
        return dataclasses.replace(self, h_range=(h, h), w_range=(low, w), opt_hw=(h, w), pad_width=w)

    def describe(self) -> str:
        how = "stretched to the opt size" if self.resize == "stretch" else "ratio kept"
        pad = f", padded to width {self.pad_width}" if self.pad_width else ""
        norm = f"x/{self.scale:g}, mean {list(self.mean)}, std {list(self.std)}"
        return f"{self.color}, {how}{pad}, {norm}, {self.layout}"

    def size_for(self, width: int, height: int) -> tuple[int, int, int]:
        """(resized H, resized W, padded W) for an image of width x height."""
        (h_lo, h_hi), (w_lo, w_hi), m = self.h_range, self.w_range, self.multiple
        if self.resize == "stretch":
            return self.opt_hw[0], self.opt_hw[1], self.opt_hw[1]
        if h_lo == h_hi:  # a recognizer: the height is the model's, the width follows the ratio
            h, w = h_lo, m * math.ceil(h_lo * width / height / m)
        else:  # a detector: fit inside the largest shape, keep within the smallest
            s = max(min(h_hi / height, w_hi / width, 1.0), h_lo / height, w_lo / width)
            h, w = m * max(1, round(height * s / m)), m * max(1, round(width * s / m))
        h, w = min(h_hi, max(h_lo, h)), min(w_hi, max(w_lo, w))
        padded = min(w_hi, max(w, self.pad_width))
        return int(h), int(w), int(padded)

    def __call__(self, path: Path) -> np.ndarray:
        """The image as a batch of one, ready to feed."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.color == "gray" else "RGB")
                h, w, padded = self.size_for(*im.size)
                im = im.resize((w, h), Image.Resampling.BILINEAR)
                x = np.asarray(im, dtype=np.float32)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise OcrgraftError(f"image {path}: cannot be read ({exc})") from None
        x = x[:, :, None] if x.ndim == 2 else x
        if self.color == "bgr":
            x = x[:, :, ::-1]
        if x.shape[2] != self.channels:
            raise OcrgraftError(
                f"image {path}: {x.shape[2]} channel(s) after color '{self.color}', the model reads "
                f"{self.channels}; set [preprocess] color"
            )
        x = (x / self.scale - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if padded > w:
            x = np.concatenate([x, np.zeros((h, padded - w, x.shape[2]), np.float32)], axis=1)
        x = x[None].astype(np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x)


def _list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_items(
    folder: str | Path,
    preprocess: Preprocess,
    labels: str | Path | None = "auto",
    limit: int | None = None,
) -> list[Item]:
    """Every image of the folder (up to `limit`), preprocessed, with its label."""
    root = Path(folder)
    return [
        Item(path.relative_to(root).as_posix(), label, {preprocess.input: preprocess(path)}, path)
        for path, label in list_images(root, labels, limit)
    ]


def calibration_inputs(
    folder: str | Path, preprocess: Preprocess | None, inputs: list[str], limit: int | None = None
) -> list[dict[str, np.ndarray]]:
    """INT8 calibration batches from `--calib DIR`: images through the recipe's preprocessing (pinned to
    one shape by the caller), or .npy (a one-input model) / .npz (arrays by input name) files, read
    without pickles. One kind per folder."""
    root = Path(folder)
    if not root.is_dir():
        raise OcrgraftError(f"--calib {root}: not a folder (give a folder of images, .npy or .npz inputs)")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    arrays = [p for p in files if p.suffix.lower() in (".npy", ".npz")]
    if images and arrays:
        raise OcrgraftError(f"--calib {root}: mixes images and .npy/.npz files; give one kind")
    if not images and not arrays:
        raise OcrgraftError(f"--calib {root}: no images (.jpg/.png/.bmp), .npy or .npz files in it")
    if images:
        if preprocess is None:
            raise OcrgraftError(
                f"--calib {root} holds images, but the recipe gives no [preprocess] (mean/std, color) to "
                "turn pixels into model inputs"
            )
        return [{preprocess.input: preprocess(p)} for p in images[:limit]]
    out = []
    for path in arrays[:limit]:
        feeds = plain_arrays(path, "--calib")
        if "" in feeds:  # a .npy: one input's array
            if len(inputs) != 1:
                raise OcrgraftError(f"--calib {path}: a .npy holds one input; the model has {len(inputs)}")
            feeds = {inputs[0]: feeds[""]}
        missing = sorted(set(inputs) - set(feeds))
        if missing:
            raise OcrgraftError(f"--calib {path}: no array for input(s) {', '.join(missing)}")
        out.append({k: feeds[k] for k in inputs})
    return out
