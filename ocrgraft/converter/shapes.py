"""Input shape ranges (min / opt / max per input) and the random, non-zero inputs drawn at them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ocrgraft.errors import OcrgraftError

ROLES = ("min", "opt", "max")


def parse_dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise OcrgraftError(f"bad shape '{text}': expected dims joined by 'x', e.g. 1x3x48x320") from None
    if not dims or any(d <= 0 for d in dims):
        raise OcrgraftError(f"bad shape '{text}': dims must be positive integers")
    return dims


def check_range(name: str, shapes: list[tuple[int, ...]]) -> None:
    """Shapes are min[, opt], max: each dim positive and non-decreasing, or a vendor script would be
    written for a range that does not exist (trtexec --minShapes above --maxShapes, atc [8~1])."""
    roles = ROLES if len(shapes) == 3 else ("min", "max") if len(shapes) == 2 else ("shape",)
    for shape in shapes:
        if any(d <= 0 for d in shape):
            raise OcrgraftError(f"input '{name}' shape {fmt_dims(shape)}: dims must be positive integers")
    for (ra, a), (rb, b) in zip(zip(roles, shapes), zip(roles[1:], shapes[1:])):
        for axis, (lo, hi) in enumerate(zip(a, b)):
            if lo > hi:
                raise OcrgraftError(f"input '{name}' dim {axis}: {ra} {lo} is larger than {rb} {hi} "
                                    f"({fmt_dims(a)} vs {fmt_dims(b)}); give the shapes as MIN,OPT,MAX")


def is_static(dim) -> bool:
    """A fixed size; a dim name, an unknown dim or a negative number (-1, as some exporters write) is open."""
    return isinstance(dim, int) and dim >= 0


def fmt_dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def describe_shape(shape: ir.Shape | None) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join(str(d) if isinstance(d, int) else (d.value or "?") for d in shape) + "]"


@dataclass
class ShapeSet:
    """Per input, the shapes to check at: one shape, or min, opt and max of a dynamic range."""

    shapes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: str | list[str] | dict | ShapeSet | None) -> ShapeSet:
        """Read `NAME:MIN[,OPT,MAX]` specs (a list, or one string with ';' between inputs)."""
        if specs is None:
            return cls()
        if isinstance(specs, ShapeSet):
            return specs
        if isinstance(specs, dict):
            out = {k: [tuple(int(d) for d in s) for s in v] for k, v in specs.items()}
            for name, shapes in out.items():
                check_range(name, shapes)
            return cls(out)
        if isinstance(specs, str):
            specs = [s for s in specs.split(";") if s.strip()]
        out: dict[str, list[tuple[int, ...]]] = {}
        for spec in specs:
            name, sep, rest = spec.strip().rpartition(":")
            if not sep or not name or not rest:
                raise OcrgraftError(f"bad --shapes '{spec}': expected NAME:MIN[,OPT,MAX], e.g. x:1x3x48x32,1x3x48x320,8x3x48x1280")
            shapes = [parse_dims(s) for s in rest.split(",")]
            if len(shapes) > 3:
                raise OcrgraftError(f"bad --shapes '{spec}': at most three shapes (min, opt, max)")
            if len({len(s) for s in shapes}) != 1:
                raise OcrgraftError(f"bad --shapes '{spec}': all shapes of one input need the same rank")
            if name in out:
                raise OcrgraftError(f"--shapes gives input '{name}' twice; give each input once as NAME:MIN,OPT,MAX")
            check_range(name, shapes)
            out[name] = shapes
        return cls(out)

    def __bool__(self) -> bool:
        return bool(self.shapes)

    def cases(self) -> list[tuple[str, dict[str, tuple[int, ...]]]]:
        """The test points: (label, {input: shape}); a case i takes each input's i-th shape."""
        n = max((len(v) for v in self.shapes.values()), default=0)
        labels = ROLES if n == 3 else ("opt",) if n == 1 else tuple(f"s{i}" for i in range(n))
        seen, out = set(), []
        for i in range(n):
            case = {k: v[min(i, len(v) - 1)] for k, v in self.shapes.items()}
            key = tuple(sorted(case.items()))
            if key not in seen:
                seen.add(key)
                out.append((labels[i], case))
        return out

    def opt(self) -> dict[str, tuple[int, ...]]:
        cases = self.cases()
        return dict(cases[len(cases) // 2][1]) if cases else {}

    def describe(self) -> str:
        return "; ".join(f"{k}:{','.join(fmt_dims(s) for s in v)}" for k, v in self.shapes.items())

    def resolve(self, inputs: list[ir.Value]) -> ShapeSet:
        """Check the shapes against a model's inputs and fill in inputs that are fully static."""
        names = [v.name for v in inputs]
        for name in self.shapes:
            if name not in names:
                raise OcrgraftError(f"--shapes names input '{name}', but the model's inputs are: {', '.join(names)}")
        out: dict[str, list[tuple[int, ...]]] = {}
        for value in inputs:
            shape = value.shape
            if shape is None:
                if value.name not in self.shapes:
                    raise OcrgraftError(f"input '{value.name}' has no declared shape; give one with --shapes {value.name}:...")
                out[value.name] = self.shapes[value.name]
                continue
            if value.name not in self.shapes:
                open_dims = [i for i, d in enumerate(shape) if not is_static(d)]
                if open_dims:
                    i = open_dims[0]
                    label = shape[i] if isinstance(shape[i], int) else (shape[i].value or "?")
                    raise OcrgraftError(
                        f"input '{value.name}' {describe_shape(shape)} leaves dim {i} ('{label}') open: "
                        f"give its range with --shapes {value.name}:MIN[,OPT,MAX]")
                out[value.name] = [tuple(int(d) for d in shape)]
                continue
            for dims in self.shapes[value.name]:
                if len(dims) != len(shape):
                    raise OcrgraftError(
                        f"input '{value.name}' has rank {len(shape)} {describe_shape(shape)}, "
                        f"but the shape {fmt_dims(dims)} has rank {len(dims)}")
                for i, (want, have) in enumerate(zip(dims, shape)):
                    if is_static(have) and have != want:
                        raise OcrgraftError(
                            f"input '{value.name}' dim {i} is fixed at {have} {describe_shape(shape)}, "
                            f"but the shape {fmt_dims(dims)} gives {want}")
            out[value.name] = self.shapes[value.name]
        return ShapeSet(out)

    def clamp(self, inputs: list[ir.Value]) -> ShapeSet:
        """The shapes a stage accepts: dims that a pass fixed take the fixed value."""
        out = {}
        for value in inputs:
            shapes = self.shapes.get(value.name, [])
            if value.shape is not None:
                shapes = [tuple(h if is_static(h) else w for w, h in zip(s, value.shape)) for s in shapes]
            out[value.name] = list(dict.fromkeys(shapes))
        return ShapeSet(out)


def random_inputs(inputs: list[ir.Value], case: dict[str, tuple[int, ...]], seed: int,
                  given: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Random inputs at one case's shapes: floats in ±[0.05, 1] (never zero), small positive ints.

    Inputs that belong to a graph (a model's `graph.inputs`) know their consumers, and an input that an
    op reads as indices, axes, sizes or a shape is drawn valid for it from the other inputs' shapes:
    Gather/GatherElements/Scatter* indices within the axis, GatherND/ScatterND index tuples, OneHot
    indices below depth, TopK k within the axis, axes within the rank (unique; Squeeze's of size 1),
    Slice starts < ends, Reshape/Expand shapes that fit, Split sizes that add up, loss targets below
    the class count, positive Resize scales... Without such a rule ints are drawn in [1, 9].
    `given` fixes some inputs (user-given values; their shapes need not be in `case`) and is returned
    with the rest. Rank-0 inputs are arrays of shape (); an optional tensor is fed as a tensor; a
    sequence (or an optional sequence) cannot be drawn: OcrgraftError, naming the input."""
    rng = np.random.default_rng(seed)
    ours = {v.name: v for v in inputs}
    feeds = dict(given or {})
    busy: set[str] = set()

    def shape_of(value: ir.Value | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if value.name in feeds or ours.get(value.name) is value and value.name in case:
            return np.shape(feeds[value.name]) if value.name in feeds else tuple(case[value.name])
        if value.const_value is not None:
            return tuple(value.const_value.shape.numpy())
        if value.shape is not None and all(is_static(d) for d in value.shape):
            return tuple(int(d) for d in value.shape)
        return None

    def value_of(value: ir.Value | None) -> np.ndarray | None:
        if value is not None and ours.get(value.name) is value and value.name not in busy:
            return draw(value)
        return value.const_value.numpy() if value is not None and value.const_value is not None else None

    def draw(value: ir.Value) -> np.ndarray:
        if value.name not in feeds:
            busy.add(value.name)
            feeds[value.name] = _draw(value, tuple(case[value.name]), rng, shape_of, value_of)
        return feeds[value.name]

    for value in inputs:
        draw(value)
    return {v.name: feeds[v.name] for v in inputs}


def _draw(value: ir.Value, shape: tuple[int, ...], rng, shape_of, value_of) -> np.ndarray:
    type_ = value.type
    if isinstance(type_, ir.OptionalType):
        type_ = type_.elem_type
    if type_ is not None and not isinstance(type_, ir.TensorType):
        raise OcrgraftError(f"input '{value.name}' is a {value.type}: random test inputs are tensors only; "
                            "give its value (Pipeline(inputs=...), --inputs FILE.npz)")
    dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
    for node, index in value.uses():   # the first consumer that says which values are valid
        valid = _valid_values(node, index, shape, rng, shape_of, value_of)
        if valid is not None:
            return np.asarray(valid).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        mag = rng.uniform(0.05, 1.0, shape)
        sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
        return np.asarray(mag * sign).astype(dtype)
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    ints = np.asarray(rng.integers(1, 10, shape))
    return ints.astype(str).astype(object) if dtype == object else ints.astype(dtype)


# op: which input holds indices into one axis of input 0 (the `axis` attribute's, or the one named below)
_INDICES = {"Gather": 1, "GatherElements": 1, "ScatterElements": 1, "Scatter": 1,
            "NegativeLogLikelihoodLoss": 1, "SoftmaxCrossEntropyLoss": 1, "RoiAlign": 2}
# op: which input holds axes of input 0 (every Reduce* op: input 1)
_AXES = {"Squeeze": 1, "Unsqueeze": 1, "Slice": 3, "Pad": 3, "CumSum": 1, "CenterCropPad": 2, "DFT": 2}


def _valid_values(node: ir.Node, i: int, shape: tuple[int, ...], rng, shape_of, value_of):
    """Values that `node` accepts at its input `i` (an array of `shape`), or None where it makes no demand
    or the demand is not knowable from the shapes and constants at hand."""
    op, ins = node.op_type, node.inputs
    if node.domain not in ("", "ai.onnx") or not ins:
        return None
    data = shape_of(ins[0])
    size = int(np.prod(shape))

    def dim(axis: int) -> int | None:
        return data[axis] if data is not None and -len(data) <= axis < len(data) else None

    if _INDICES.get(op) == i:   # indices into one axis of input 0
        axis = {"RoiAlign": 0, "NegativeLogLikelihoodLoss": 1, "SoftmaxCrossEntropyLoss": 1}.get(op)
        n = dim(node.attributes.get_int("axis", 0) if axis is None else axis)
        return rng.integers(0, n, shape) if n else None
    if op in ("GatherND", "ScatterND") and i == 1 and shape:
        b = node.attributes.get_int("batch_dims", 0)
        dims = data[b:b + shape[-1]] if data is not None else ()
        return rng.integers(0, dims, shape) if len(dims) == shape[-1] and all(dims) else None
    if op == "OneHot" and i == 0:
        depth = value_of(ins[1])
        return None if depth is None else rng.integers(0, max(int(np.ravel(depth)[0]), 1), shape)
    if op == "TopK" and i == 1:
        n = dim(node.attributes.get_int("axis", -1))
        return None if n is None else rng.integers(min(n, 1), n + 1, shape)
    if op in ("ReverseSequence", "RNN", "GRU", "LSTM") and i == (1 if op == "ReverseSequence" else 4):
        axis = node.attributes.get_int("time_axis" if op == "ReverseSequence" else "layout", 0)
        n = dim(axis)
        return rng.integers(min(n, 1), n + 1, shape) if n is not None else None
    if (_AXES.get(op) == i or op.startswith("Reduce") and i == 1) and data is not None:
        rank = len(data) + (size if op == "Unsqueeze" else 0)
        axes = [a for a in range(rank) if op != "Squeeze" or data[a] == 1]
        return rng.permutation(axes)[:size].reshape(shape) if size <= len(axes) else None
    if op == "Slice" and i in (1, 2, 4) and data is not None and len(shape) == 1:
        if i == 4:
            return rng.integers(1, 3, shape)
        axes = value_of(ins[3]) if len(ins) > 3 and ins[3] is not None else np.arange(shape[0])
        dims = np.array([data[int(a)] for a in np.ravel(axes)]) if axes is not None else None
        if dims is None or len(dims) != shape[0]:
            return None
        half = dims // 2   # starts in [0, half], ends in [half + 1, dim]: a non-empty slice
        return rng.integers(0, half + 1) if i == 1 else rng.integers(half + 1, np.maximum(dims, half + 1) + 1)
    if op in ("Reshape", "Expand") and i == 1 and data is not None and len(shape) == 1:
        n, r = shape[0], len(data)
        if op == "Expand":   # broadcast: the data's own dims, new leading dims of 1..3
            return [*rng.integers(1, 4, max(n - r, 0)), *data[max(r - n, 0):]] if n >= r else None
        if n >= r:
            return [1] * (n - r) + list(data)
        return [int(np.prod(data[:r - n + 1])), *data[r - n + 1:]] if n else None
    if op in ("Split", "SplitToSequence") and i == 1:
        n = dim(node.attributes.get_int("axis", 0))
        if n is None or not n:
            return None
        if not shape:
            return rng.integers(1, n + 1, shape)
        cuts = np.sort(rng.integers(0, n + 1, size - 1))
        return np.diff([0, *cuts, n]).reshape(shape)
    if op == "AffineGrid" and i == 1 and data is not None and shape == (len(data) + 1,):
        return [data[0], 1, *rng.integers(2, 6, len(data) - 1)]   # N from theta, C, spatial sizes
    if op in ("Tile", "ConstantOfShape") and i == (1 if op == "Tile" else 0):
        return rng.integers(1, 4, shape)
    if op == "Resize" and i == 2 or op == "Upsample" and i == 1:
        return rng.uniform(1.0, 2.0, shape)   # scales: positive, never shrinking a dim to 0
    if op == "NonMaxSuppression" and i == 3 or op == "Dropout" and i == 1:
        return rng.uniform(0.0, 0.5, shape)   # iou threshold, drop ratio
    if op == "Dropout" and i == 2:
        return np.zeros(shape, bool)          # training mode would drop at random
    return None
