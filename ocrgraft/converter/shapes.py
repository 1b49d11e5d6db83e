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
            return cls({k: [tuple(s) for s in v] for k, v in specs.items()})
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


def random_inputs(inputs: list[ir.Value], case: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Random inputs at one case's shapes: floats in ±[0.05, 1] (never zero), small positive ints."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in inputs:
        shape = case[value.name]
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        if np.issubdtype(dtype, np.floating):
            mag = rng.uniform(0.05, 1.0, shape)
            sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
            feeds[value.name] = (mag * sign).astype(dtype)
        elif dtype == np.bool_:
            feeds[value.name] = rng.random(shape) < 0.5
        else:
            feeds[value.name] = rng.integers(1, 10, shape).astype(dtype)
    return feeds
