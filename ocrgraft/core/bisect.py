"""Where two graphs that should compute the same thing first part: every intermediate tensor the two
share by name is exposed as an output (a chunk at a time, so memory stays bounded), both run on the
failing input, and the tensors are compared in the second graph's topological order. The first one
past the tolerance names the node to look at.

A pass keeps the names of the values it does not rewrite, so the shared tensors are the ones before and
after its rewrites; the first diverging one is where its change first shows. `first_divergence_from`
does the same against tensors another runtime dumped (a BModel's per-layer outputs), by ONNX name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from ocrgraft.core.compare import Tolerance, diff_arrays, similarity
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.graph import infer_shapes_fresh
from ocrgraft.core.modelio import to_bytes, to_ir
from ocrgraft.core.runner import Runner

CHUNK = 256  # intermediate tensors exposed per run


@dataclass
class Divergence:
    tensor: str
    node: str
    op: str
    inputs: list[str]  # "name [shape]" of the node's inputs
    error: str  # how it differs, e.g. "max abs err 0.0123"
    compared: int  # shared tensors compared up to and including this one
    span: list[str] = field(default_factory=list)  # "Op 'name'" of the nodes since the agreeing tensors

    def describe(self) -> str:
        inputs = ", ".join(self.inputs) or "none"
        text = (
            f"first diverging tensor '{self.tensor}' ({self.error}), made by node "
            f"'{self.node}' ({self.op}; inputs {inputs}), after {self.compared - 1} shared tensors that agree"
        )
        if len(self.span) > 1:
            text += f"; the nodes between the last agreeing tensors and it: {', '.join(self.span)}"
        return text


# judge(name, got, expected) -> "" when they agree, else how they differ
Judge = Callable[[str, np.ndarray, np.ndarray], str]


def first_divergence(
    before: ir.Model | bytes, after: ir.Model | bytes, feeds: dict[str, np.ndarray], tol: Tolerance
) -> Divergence | None:
    """The first tensor (in `after`'s order) that both graphs compute and that differs beyond `tol`."""
    try:
        a_bytes, b_bytes = _typed(before), _typed(after)
    except Exception:  # shape inference may fail on a broken graph: nothing to say, not a second error
        return None
    a_names = {v.name for n in _model(a_bytes).graph for v in n.outputs if _exposable(v)}

    def judge(name: str, got: np.ndarray, expected: np.ndarray) -> str:
        diff = diff_arrays(name, got, expected, tol)
        return "" if diff.ok else f"max abs err {diff.max_abs:.3g}"

    def reference(names: list[str]) -> dict[str, np.ndarray]:
        return _run_with_outputs(a_bytes, names, feeds)

    return _walk(b_bytes, feeds, a_names, reference, judge)


def first_divergence_from(
    model: ir.Model | bytes, feeds: dict[str, np.ndarray], tensors: dict[str, np.ndarray], judge: Judge
) -> Divergence | None:
    """The first of `model`'s tensors (in its order) that `tensors` (by ONNX value name, e.g. a BModel's
    dumped layers) holds and `judge` finds different from ONNX Runtime's value."""
    try:
        data = _typed(model)
    except Exception:
        return None
    return _walk(data, feeds, set(tensors), lambda names: {n: tensors[n] for n in names}, judge, flip=True)


def _walk(
    data: bytes,
    feeds: dict[str, np.ndarray],
    shared: set[str],
    other: Callable[[list[str]], dict[str, np.ndarray]],
    judge: Judge,
    flip: bool = False,
) -> Divergence | None:
    """Compare `data`'s tensors named in `shared`, in its topological order and a chunk at a time, with
    those `other` gives; `flip`: the other side is the one judged (ONNX Runtime's is the expected)."""
    order = [v for n in _model(data).graph for v in n.outputs if _exposable(v) and v.name in shared]
    compared, agreed = 0, set()
    for start in range(0, len(order), CHUNK):
        names = [v.name for v in order[start : start + CHUNK]]
        try:
            mine, theirs = _run_with_outputs(data, names, feeds), other(names)
        except OcrgraftError:
            return None
        for value in order[start : start + CHUNK]:
            compared += 1
            x, y = mine.get(value.name), theirs.get(value.name)
            if x is None or y is None or x.size != y.size:
                continue
            x, y = (y.reshape(x.shape), x) if flip else (x, y.reshape(x.shape))
            error = judge(value.name, x, y)
            if error:
                node = value.producer()
                return Divergence(
                    value.name,
                    _label(node),
                    node.op_type,
                    [f"{i.name} {_shape({**feeds, **mine}, i)}" for i in node.inputs if i is not None],
                    error,
                    compared,
                    _span(node, agreed),
                )
            agreed.add(value.name)
    return None


def layer_similarities(
    model: ir.Model | bytes, feeds: dict[str, np.ndarray], tensors: dict[str, np.ndarray]
) -> list[tuple[ir.Value, dict]]:
    """Every tensor of `model` that `tensors` holds (by ONNX value name), in the model's order, with its
    similarity (core.compare.similarity) to ONNX Runtime's value on `feeds`, a chunk at a time."""
    data = _typed(model)
    order = [v for n in _model(data).graph for v in n.outputs if _exposable(v) and v.name in tensors]
    out = []
    for start in range(0, len(order), CHUNK):
        chunk = order[start : start + CHUNK]
        mine = _run_with_outputs(data, [v.name for v in chunk], feeds)
        for value in chunk:
            ref, got = mine.get(value.name), tensors[value.name]
            if ref is not None and ref.size == got.size:
                out.append((value, similarity(got.reshape(ref.shape), ref)))
    return out


def _span(node: ir.Node, agreed: set[str], limit: int = 12) -> list[str]:
    """The node and those it reads from, back to tensors that agreed (or inputs and constants): where the
    difference arose when the other side fused them into one layer. In graph order, at most `limit`."""
    seen, todo = {id(node): node}, [node]
    while todo and len(seen) < limit:
        for value in todo.pop().inputs:
            producer = value.producer() if value is not None else None
            if producer is None or value.name in agreed or id(producer) in seen:
                continue
            if producer.op_type in ("Constant", "Shape"):
                continue
            seen[id(producer)] = producer
            todo.append(producer)
    order = {id(n): i for i, n in enumerate(node.graph)}
    return [f"{n.op_type} '{_label(n)}'" for n in sorted(seen.values(), key=lambda n: order[id(n)])]


def _label(node: ir.Node) -> str:
    return node.name or f"unnamed, makes {node.outputs[0].name}"


def _model(data: bytes) -> ir.Model:
    return to_ir(onnx.load_from_string(data))


def _typed(model: ir.Model | bytes) -> bytes:
    model = _model(model if isinstance(model, bytes) else to_bytes(model))
    infer_shapes_fresh(model)
    return to_bytes(model)


def _exposable(value: ir.Value) -> bool:
    return (
        value.type is not None
        and isinstance(value.type, ir.TensorType)
        and value.dtype is not None
        and value.dtype.is_floating_point()
        and value.producer() is not None
    )


def _run_with_outputs(data: bytes, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    model = _model(data)
    values = {v.name: v for n in model.graph for v in n.outputs}
    model.graph.outputs.clear()
    model.graph.outputs.extend(values[n] for n in names if n in values)
    return Runner(model, what="a graph with its intermediate tensors exposed", optimize=False).run(feeds)


def _shape(outputs: dict[str, np.ndarray], value: ir.Value) -> str:
    if value.name in outputs:
        return "[" + "x".join(map(str, outputs[value.name].shape)) + "]"
    if value.shape is not None:
        return "[" + "x".join(str(d) for d in value.shape) + "]"
    return "[?]"
