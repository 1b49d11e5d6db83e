"""Input shape ranges (min / opt / max per input) and the random, non-zero inputs drawn at them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError

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
                raise OcrgraftError(
                    f"input '{name}' dim {axis}: {ra} {lo} is larger than {rb} {hi} "
                    f"({fmt_dims(a)} vs {fmt_dims(b)}); give the shapes as MIN,OPT,MAX"
                )


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
                raise OcrgraftError(
                    f"bad --shapes '{spec}': expected NAME:MIN[,OPT,MAX], "
                    "e.g. x:1x3x48x32,1x3x48x320,8x3x48x1280"
                )
            shapes = [parse_dims(s) for s in rest.split(",")]
            if len(shapes) > 3:
                raise OcrgraftError(f"bad --shapes '{spec}': at most three shapes (min, opt, max)")
            if len({len(s) for s in shapes}) != 1:
                raise OcrgraftError(f"bad --shapes '{spec}': all shapes of one input need the same rank")
            if name in out:
                raise OcrgraftError(
                    f"--shapes gives input '{name}' twice; give each input once as NAME:MIN,OPT,MAX"
                )
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
                raise OcrgraftError(
                    f"--shapes names input '{name}', but the model's inputs are: {', '.join(names)}"
                )
        out: dict[str, list[tuple[int, ...]]] = {}
        for value in inputs:
            shape = value.shape
            if shape is None:
                if value.name not in self.shapes:
                    raise OcrgraftError(
                        f"input '{value.name}' has no declared shape; give one with --shapes {value.name}:..."
                    )
                out[value.name] = self.shapes[value.name]
                continue
            if value.name not in self.shapes:
                open_dims = [i for i, d in enumerate(shape) if not is_static(d)]
                if open_dims:
                    i = open_dims[0]
                    label = shape[i] if isinstance(shape[i], int) else (shape[i].value or "?")
                    raise OcrgraftError(
                        f"input '{value.name}' {describe_shape(shape)} leaves dim {i} ('{label}') open: "
                        f"give its range with --shapes {value.name}:MIN[,OPT,MAX]"
                    )
                out[value.name] = [tuple(int(d) for d in shape)]
                continue
            for dims in self.shapes[value.name]:
                if len(dims) != len(shape):
                    raise OcrgraftError(
                        f"input '{value.name}' has rank {len(shape)} {describe_shape(shape)}, "
                        f"but the shape {fmt_dims(dims)} has rank {len(dims)}"
                    )
                for i, (want, have) in enumerate(zip(dims, shape)):
                    if is_static(have) and have != want:
                        raise OcrgraftError(
                            f"input '{value.name}' dim {i} is fixed at {have} {describe_shape(shape)}, "
                            f"but the shape {fmt_dims(dims)} gives {want}"
                        )
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


@dataclass
class Case:
    """One test point: shapes, the random inputs, and the source's outputs for them."""

    label: str
    shapes: dict[str, tuple[int, ...]]
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]

    @property
    def title(self) -> str:
        return f"{self.label} ({', '.join(f'{k}={fmt_dims(v)}' for k, v in self.shapes.items())})"

    @property
    def from_image(self) -> bool:
        """A real image given with --images (its label: `image <name>`), not a random input."""
        return self.label.startswith(IMAGE_LABEL)


IMAGE_LABEL = "image "  # a case made from a real image is labelled IMAGE_LABEL + its name


def random_inputs(
    inputs: list[ir.Value],
    case: dict[str, tuple[int, ...]],
    seed: int,
    given: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Random inputs at one case's shapes: floats in ±[0.05, 1] (never zero), small positive ints.

    Inputs that belong to a graph (a model's `graph.inputs`) know their consumers, so an input that an
    op reads as indices, axes, sizes or a shape is drawn valid for it from the other inputs' shapes
    (and, where needed, shapes inferred at this case): Gather*/Scatter*/loss-target indices within the
    indexed axis (followed through Unsqueeze, Cast, Reshape...), GatherND/ScatterND index tuples,
    OneHot indices below depth, TopK k and sequence lengths within the axis, unique axes within the
    rank (Squeeze's of size 1), Slice starts < ends, Reshape/Expand shapes and Split sizes that fit,
    positive Resize scales... Ints no rule covers are drawn in [1, 9].
    `given` fixes some inputs (user-given values; `case` need not hold their shapes); they are returned
    with the rest. Rank-0 inputs are arrays of shape (); an optional tensor is fed as a tensor; a
    sequence (or an optional sequence) cannot be drawn: OcrgraftError, naming the input."""
    rng = np.random.default_rng(seed)
    ours = {v.name: v for v in inputs}
    feeds = dict(given or {})
    busy: set[str] = set()
    inferred: list[dict[str, tuple[int, ...]]] = []  # filled once, only when a rule needs it

    def shape_of(value: ir.Value | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if value.name in feeds:
            return np.shape(feeds[value.name])
        if ours.get(value.name) is value:
            return tuple(case[value.name]) if value.name in case else None
        if value.const_value is not None:
            return tuple(value.const_value.shape.numpy())
        if value.shape is not None and all(is_static(d) for d in value.shape):
            return tuple(int(d) for d in value.shape)
        node = value.producer()  # Reshape(t, Shape(v)), which ONNX shape inference leaves open, is v's shape
        target = (
            node.inputs[1].producer()
            if node is not None
            and node.op_type == "Reshape"
            and len(node.inputs) > 1
            and node.inputs[1] is not None
            else None
        )
        if target is not None and target.op_type == "Shape" and not target.attributes:
            return shape_of(target.inputs[0])
        if not inferred and value.graph is not None:
            inferred.append(_inferred_shapes(value.graph, {k: shape_of(v) for k, v in ours.items()}))
        return inferred[0].get(value.name) if inferred else None

    def value_of(value: ir.Value | None) -> np.ndarray | None:
        if value is None or value.name in busy and value.name not in feeds:  # drawing it now
            return None
        if value.name in feeds or ours.get(value.name) is value:
            return draw(value)
        return value.const_value.numpy() if value.const_value is not None else None

    def draw(value: ir.Value) -> np.ndarray:
        if value.name not in feeds:
            busy.add(value.name)
            feeds[value.name] = _draw(value, tuple(case[value.name]), rng, shape_of, value_of)
        return feeds[value.name]

    for value in inputs:
        draw(value)
    return {v.name: feeds[v.name] for v in inputs}


def require_tensor(value: ir.Value) -> None:
    """Random test inputs are tensors (an optional tensor is fed as one): refuse a sequence, naming it."""
    type_ = value.type.elem_type if isinstance(value.type, ir.OptionalType) else value.type
    if type_ is not None and not isinstance(type_, ir.TensorType):
        raise OcrgraftError(
            f"input '{value.name}' is a {value.type}: random test inputs are tensors only; "
            "give its value (Pipeline(inputs=...), --inputs FILE.npz)"
        )


def _draw(value: ir.Value, shape: tuple[int, ...], rng, shape_of, value_of) -> np.ndarray:
    require_tensor(value)
    dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
    bound = None if np.issubdtype(dtype, np.floating) else _bounds(value, shape_of, value_of)
    if bound is not None:
        return np.asarray(rng.integers(*bound, shape)).astype(dtype)
    for node, index in value.uses():  # the first consumer that says which values are valid
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
    return ints.astype(str).astype(object) if dtype == np.dtype(object) else ints.astype(dtype)


def _inferred_shapes(graph: ir.Graph, case: dict) -> dict[str, tuple[int, ...]]:
    """The static shapes ONNX shape inference finds for `graph`'s values with its inputs at `case`."""
    import onnx

    proto = ir.serde.serialize_graph(graph)
    for info in proto.input:
        dims = case.get(info.name)
        if dims is not None and info.type.HasField("tensor_type"):
            info.type.tensor_type.shape.Clear()
            for d in dims:
                info.type.tensor_type.shape.dim.add(dim_value=d)
    model = onnx.helper.make_model(
        proto, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in graph.opset_imports.items()]
    )
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001  (best effort: the rules that need these shapes then make no demand)
        return {}
    out = {}
    for info in [*model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[info.name] = tuple(d.dim_value for d in dims)
    return out


# Ops that hand on these inputs' values (moved, not changed), so indices keep the bound of where they go
# (and Concat, every input's).
_MOVES_VALUES = {
    **dict.fromkeys(
        ("Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand", "Transpose", "Tile"),
        (0,),
    ),
    "Where": (1, 2),
}


def _bounds(value: ir.Value, shape_of, value_of, depth: int = 0) -> tuple[int, int] | None:
    """[low, high) that every consumer (followed through ops that move values) accepts, or None."""
    found = []
    for node, i in value.uses():
        bound = _index_bound(node, i, shape_of, value_of)
        moves = node.op_type == "Concat" or i in _MOVES_VALUES.get(node.op_type, ())
        if bound is None and moves and depth < 4:
            bound = _bounds(node.outputs[0], shape_of, value_of, depth + 1)
        if bound is not None:
            found.append(bound)
    lo, hi = max((b[0] for b in found), default=0), min((b[1] for b in found), default=0)
    return (lo, hi) if hi > lo else None


# op: (input holding indices into one axis of input 0, which axis: an attribute with default, or a number)
_INDEX_INPUTS = {
    "Gather": (1, ("axis", 0)),
    "GatherElements": (1, ("axis", 0)),
    "Scatter": (1, ("axis", 0)),
    "ScatterElements": (1, ("axis", 0)),
    "ArrayFeatureExtractor": (1, -1),
    "RoiAlign": (2, 0),
    "NegativeLogLikelihoodLoss": (1, 1),
    "SoftmaxCrossEntropyLoss": (1, 1),
}
# op: (input holding lengths or counts within one axis of input `of`, that axis)
_LENGTH_INPUTS = {
    "TopK": (1, 0, ("axis", -1)),
    "ReverseSequence": (1, 0, ("time_axis", 0)),
    "RNN": (4, 0, ("layout", 0)),
    "GRU": (4, 0, ("layout", 0)),
    "LSTM": (4, 0, ("layout", 0)),
    "Attention": (6, 1, -2),
}


def _index_bound(node: ir.Node, i: int, shape_of, value_of) -> tuple[int, int] | None:
    op, ins = node.op_type, node.inputs
    if node.domain not in ("", "ai.onnx", "ai.onnx.ml"):
        return None

    def dim(of: int, axis) -> int | None:
        shape = shape_of(ins[of]) if of < len(ins) else None
        if not isinstance(axis, int):
            axis = node.attributes.get_int(*axis)
        return shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None

    if op in _INDEX_INPUTS and _INDEX_INPUTS[op][0] == i:
        n = dim(0, _INDEX_INPUTS[op][1])
        return (0, n) if n else None
    if op in _LENGTH_INPUTS and _LENGTH_INPUTS[op][0] == i:
        n = dim(*_LENGTH_INPUTS[op][1:])
        return (1, n + 1) if n else None
    if op == "OneHot" and i == 0 and (depth := value_of(ins[1])) is not None:
        return 0, max(int(np.ravel(depth)[0]), 1)
    if op == "TensorScatter" and i == 2:  # write positions: the update must fit in the cache
        axis = node.attributes.get_int("axis", -2)
        room, n = dim(0, axis), dim(1, axis)
        return (0, room - n + 1) if room is not None and n is not None and room >= n else None
    if op == "Loop" and i == 0:
        return 1, 4  # a few iterations: bodies often index data of a fixed size by the iteration number
    return None


# op: which input holds axes of input 0 (and every Reduce* op's input 1)
_AXES_INPUTS = {
    "Squeeze": 1,
    "Unsqueeze": 1,
    "Slice": 3,
    "Pad": 3,
    "CumSum": 1,
    "CumProd": 1,
    "CenterCropPad": 2,
    "DFT": 2,
}


# ops whose rules below read input 0's shape
_SHAPED_BY_DATA = frozenset(
    {
        "GatherND",
        "ScatterND",
        "Slice",
        "Pad",
        "Reshape",
        "Expand",
        "Split",
        "SplitToSequence",
        "AffineGrid",
        "Resize",
    }
)


def _valid_values(node: ir.Node, i: int, shape: tuple[int, ...], rng, shape_of, value_of):
    """Values that `node` accepts at its input `i` (an array of `shape`), or None where it makes no demand
    or the demand is not knowable from the shapes and constants at hand."""
    op, ins = node.op_type, node.inputs
    if node.domain not in ("", "ai.onnx") or not ins:
        return None
    if op == "Tile" and i == 1 or op == "ConstantOfShape" and i == 0:
        return rng.integers(1, 4, shape)
    if op == "Upsample" and i == 1:
        return rng.uniform(1.0, 2.0, shape)  # scales: never shrinking a dim to 0
    if op == "NonMaxSuppression" and i == 3 or op == "Dropout" and i == 1:
        return rng.uniform(0.0, 0.5, shape)  # iou threshold, drop ratio
    if op == "Dropout" and i == 2:
        return np.zeros(shape, bool)  # training mode would drop at random
    if i == 0 or op not in _SHAPED_BY_DATA and op not in _AXES_INPUTS and not op.startswith("Reduce"):
        return None  # (before asking for input 0's shape, which may take shape inference)
    data = shape_of(ins[0])
    if data is None:
        return None
    size, rank = int(np.prod(shape)), len(data)
    if op in ("GatherND", "ScatterND") and i == 1 and shape:
        b = node.attributes.get_int("batch_dims", 0)
        dims = data[b : b + shape[-1]]
        return rng.integers(0, dims, shape) if len(dims) == shape[-1] and all(dims) else None
    if _AXES_INPUTS.get(op) == i or op.startswith("Reduce") and i == 1:
        rank += size if op == "Unsqueeze" else -1 if op == "DFT" else 0  # DFT's last dim: real, imaginary
        axes = [a for a in range(rank) if op != "Squeeze" or data[a] == 1]
        return rng.permutation(axes)[:size].reshape(shape) if size <= len(axes) else None
    if len(shape) != 1:
        return None
    if op in ("Slice", "Pad") and i in ((1, 2, 4) if op == "Slice" else (1,)):
        per_axis = 2 if op == "Pad" else 1  # Pad's pads: the begins, then the ends
        axes = value_of(ins[3]) if len(ins) > 3 and ins[3] is not None else np.arange(size // per_axis)
        if axes is None or np.size(axes) * per_axis != size:
            return None
        dims = np.array([data[int(a)] for a in np.ravel(axes)])
        if op == "Pad":  # up to 3; reflect needs pads below the dim
            reflect = node.attributes.get_string("mode", "constant") == "reflect"
            high = np.maximum(np.minimum(dims, 3), 1) if reflect else np.full(len(dims), 3)
            return rng.integers(0, np.tile(high, 2))
        if i == 4:
            return rng.integers(1, 3, shape)
        half = dims // 2  # starts in [0, half], ends in [half + 1, dim]: a non-empty slice
        return rng.integers(0, half + 1) if i == 1 else rng.integers(half + 1, np.maximum(dims, half + 1) + 1)
    if op in ("Reshape", "Expand") and i == 1:
        if op == "Expand":  # broadcast: the data's own dims, new leading dims of 1..3
            return [*rng.integers(1, 4, size - rank), *data] if size >= rank else None
        if size >= rank:
            return [1] * (size - rank) + list(data)
        return [int(np.prod(data[: rank - size + 1])), *data[rank - size + 1 :]] if size else None
    if op in ("Split", "SplitToSequence") and i == 1:
        axis = node.attributes.get_int("axis", 0)
        if not -rank <= axis < rank:
            return None
        cuts = np.sort(rng.integers(0, data[axis] + 1, size - 1))
        return np.diff([0, *cuts, data[axis]])
    if op == "AffineGrid" and i == 1 and rank == 3 and size == data[1] + 2:
        return [data[0], 1, *rng.integers(2, 6, data[1])]  # N from theta, C, spatial sizes
    if op == "Resize" and i in (2, 3):  # scales / sizes: ORT's linear and cubic modes keep N and C
        axes = node.attributes.get_ints("axes", list(range(rank)))
        keep = [rank >= 4 and a % rank < 2 for a in axes]
        if i == 2:
            return np.where(keep, 1.0, rng.uniform(1.0, 2.0, shape))
        return np.where(keep, [data[a] for a in axes], rng.integers(1, 9, shape))
    return None
