"""One comparator for every check: element-wise error with the worst element named, and the
similarity metrics vendor toolchains report (cosine, euclidean)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ocrgraft.core.errors import OcrgraftError


@dataclass(frozen=True)
class Tolerance:
    """Element-wise: |got - expected| <= atol + rtol * |expected| (numpy.allclose's rule)."""

    atol: float = 1e-5
    rtol: float = 1e-4

    def __str__(self) -> str:
        return f"atol {self.atol:g}, rtol {self.rtol:g}"


FP32 = Tolerance()


@dataclass
class OutputDiff:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...]
    got: float
    expected: float
    ok: bool
    problem: str = ""

    def describe(self) -> str:
        if self.problem:
            return f"output '{self.name}': {self.problem}"
        idx = ",".join(str(i) for i in self.worst_index)
        return (
            f"output '{self.name}' worst element [{idx}] = {self.got:.6g} (expected {self.expected:.6g}), "
            f"abs err {self.max_abs:.3g}, rel err {self.max_rel:.3g}"
        )


@dataclass
class CaseComparison:
    """One test point (shape case + sample) against one reference."""

    label: str
    shapes: dict[str, tuple[int, ...]]
    diffs: list[OutputDiff]

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs)

    def worst(self) -> OutputDiff:
        bad = [d for d in self.diffs if not d.ok]
        return bad[0] if bad else max(self.diffs, key=lambda d: d.max_abs)

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "outputs": [asdict(d) for d in self.diffs],
        }


def compare_outputs(
    got: dict[str, np.ndarray], expected: dict[str, np.ndarray], tol: Tolerance
) -> list[OutputDiff]:
    """Match outputs by name (by position when the names changed but the count did not)."""
    if set(got) == set(expected):
        pairs = [(name, got[name], expected[name]) for name in expected]
    elif len(got) == len(expected):
        pairs = [
            (f"{en}" if en == gn else f"{gn} (was {en})", g, e)
            for (gn, g), (en, e) in zip(got.items(), expected.items())
        ]
    else:
        raise OcrgraftError(
            f"output count changed: expected {len(expected)} ({', '.join(expected)}), "
            f"got {len(got)} ({', '.join(got)})"
        )
    return [d for name, g, e in pairs for d in _diff_values(name, g, e, tol)]


def _diff_values(name: str, got, expected, tol: Tolerance) -> list[OutputDiff]:
    """A sequence output (a list) is compared element by element; an empty optional (None) equals None."""
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        return [diff_arrays(f"{name}[{i}]", g, e, tol) for i, (g, e) in enumerate(zip(got, expected))]
    if got is None and expected is None:
        return []
    if isinstance(got, (list, type(None))) or isinstance(expected, (list, type(None))):
        return [
            OutputDiff(
                name,
                (),
                float("inf"),
                float("inf"),
                (),
                float("nan"),
                float("nan"),
                False,
                f"{_kind(got)} instead of {_kind(expected)}",
            )
        ]
    return [diff_arrays(name, got, expected, tol)]


def _kind(value) -> str:
    if isinstance(value, list):
        return f"a sequence of {len(value)}"
    return "None" if value is None else "a tensor"


def diff_arrays(name: str, got: np.ndarray, expected: np.ndarray, tol: Tolerance) -> OutputDiff:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return OutputDiff(
            name,
            expected.shape,
            float("inf"),
            float("inf"),
            (),
            float("nan"),
            float("nan"),
            False,
            f"shape {'x'.join(map(str, got.shape))} instead of {'x'.join(map(str, expected.shape))}",
        )
    if got.size == 0:
        return OutputDiff(name, got.shape, 0.0, 0.0, (), 0.0, 0.0, True)
    if "O" in (got.dtype.kind, expected.dtype.kind) or got.dtype.kind in "SU":  # strings: equal or not
        bad = np.argwhere(got != expected)
        if not len(bad):
            return OutputDiff(name, got.shape, 0.0, 0.0, (), float("nan"), float("nan"), True)
        idx = tuple(int(i) for i in bad[0])
        return OutputDiff(
            name,
            got.shape,
            float("inf"),
            float("inf"),
            idx,
            float("nan"),
            float("nan"),
            False,
            f"string at [{','.join(map(str, idx))}] differs",
        )
    g, e = got.astype(np.float64), expected.astype(np.float64)
    exact = not (np.issubdtype(expected.dtype, np.floating) or np.issubdtype(got.dtype, np.floating))
    nan_g, nan_e = np.isnan(g), np.isnan(e)
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinities are equal, not nan apart
        err = np.where((g == e) | nan_g & nan_e, 0.0, np.abs(g - e))
    err = np.where(nan_g ^ nan_e, np.inf, err)
    allowed = np.zeros_like(e) if exact else tol.atol + tol.rtol * np.abs(np.nan_to_num(e))
    excess = err - allowed
    flat = int(np.argmax(excess))
    idx = tuple(int(i) for i in np.unravel_index(flat, got.shape))
    rel = err / np.maximum(np.abs(np.nan_to_num(e)), max(tol.atol, 1e-30))
    return OutputDiff(
        name,
        got.shape,
        float(err.max()),
        float(rel.max()),
        idx,
        float(g[idx]),
        float(e[idx]),
        bool((excess <= 0).all()),
    )


def similarity(got: np.ndarray, ref: np.ndarray) -> dict:
    """Cosine and euclidean similarity (1 - |a-b| / |(a+b)/2|, TPU-MLIR's definition), max abs error, and
    the max abs error relative to the largest reference magnitude."""
    a, b = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cosine = float(a @ b / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    euclid = float(1.0 - np.linalg.norm(a - b) / (np.linalg.norm((a + b) / 2) + 1e-12))
    err = np.abs(a - b)
    worst = int(np.argmax(err)) if err.size else 0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return {
        "cosine": cosine,
        "euclid": euclid,
        "max_abs": float(err.max()) if err.size else 0.0,
        "max_error": float(err.max() / scale) if err.size and scale > 0 else 0.0,
        "worst_index": [int(i) for i in np.unravel_index(worst, ref.shape)] if err.size else [],
        "got": float(a[worst]) if err.size else 0.0,
        "expected": float(b[worst]) if err.size else 0.0,
    }


def text_agreement(decoder, got: np.ndarray, expected: np.ndarray) -> dict:
    """How far two outputs of one batch read the same: samples whose decoded text is equal, and the share
    of time steps whose best class is equal (finer: a near-tie can flip one step and no text). `decoder`
    is a core.decode CTCDecoder."""
    mine, theirs = decoder.decode(got), decoder.decode(expected)
    steps = decoder.probs(got).argmax(-1) == decoder.probs(expected).argmax(-1)
    return {
        "text_same": sum(x[0] == y[0] for x, y in zip(mine, theirs)),
        "text_total": len(theirs),
        "steps_same": float(steps.mean()),
        "texts": [x[0] for x in mine[:2]],
    }


# -- against labels and between artifacts, on real images ------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def normalize_text(text: str) -> str:
    """Text as recognition accuracy compares it: spaces ignored, as PaddleOCR's metric does by default
    (a padded line often reads a trailing space)."""
    return "".join(text.split())


def text_accuracy(read: list[str], labels: list[str]) -> dict:
    """Word accuracy (whole text equal) and character error rate (edits / label characters)."""
    pairs = [(normalize_text(r), normalize_text(t)) for r, t in zip(read, labels)]
    edits = sum(edit_distance(r, t) for r, t in pairs)
    chars = sum(len(t) for _, t in pairs)
    return {
        "items": len(pairs),
        "correct": sum(r == t for r, t in pairs),
        "word_accuracy": sum(r == t for r, t in pairs) / len(pairs) if pairs else None,
        "cer": edits / chars if chars else None,
    }


def mask_iou(got: np.ndarray, ref: np.ndarray, threshold: float) -> tuple[float, int]:
    """IoU of the two masks above `threshold` (1.0 when both are empty) and the pixels that change side."""
    a, b = got > threshold, ref > threshold
    union = int(np.logical_or(a, b).sum())
    return (float(np.logical_and(a, b).sum()) / union if union else 1.0), int((a != b).sum())
