"""Where two graphs that should compute the same thing first part: every intermediate tensor the two
share by name is exposed as an output (a chunk at a time, so memory stays bounded), both run on the
failing input, and the tensors are compared in the second graph's topological order. The first one
past the tolerance names the node to look at.

A pass keeps the names of the values it does not rewrite, so the shared tensors are the ones before and
after its rewrites; the first diverging one is where its change first shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from ocrgraft.core.compare import Tolerance, diff_arrays
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
    max_abs: float
    compared: int  # shared tensors compared up to and including this one

    def describe(self) -> str:
        inputs = ", ".join(self.inputs) or "none"
        return (
            f"first diverging tensor '{self.tensor}' (max abs err {self.max_abs:.3g}), made by node "
            f"'{self.node}' ({self.op}; inputs {inputs}), after {self.compared - 1} shared tensors that agree"
        )


def first_divergence(
    before: ir.Model | bytes, after: ir.Model | bytes, feeds: dict[str, np.ndarray], tol: Tolerance
) -> Divergence | None:
    """The first tensor (in `after`'s order) that both graphs compute and that differs beyond `tol`."""
    try:
        a_bytes, b_bytes = _typed(before), _typed(after)
    except Exception:  # shape inference may fail on a broken graph: nothing to say, not a second error
        return None
    a_model, b_model = _model(a_bytes), _model(b_bytes)
    a_values = {v.name: v for n in a_model.graph for v in n.outputs if _exposable(v)}
    order = [v for n in b_model.graph for v in n.outputs if _exposable(v) and v.name in a_values]
    compared = 0
    for start in range(0, len(order), CHUNK):
        names = [v.name for v in order[start : start + CHUNK]]
        try:
            got_a = _run_with_outputs(a_bytes, names, feeds)
            got_b = _run_with_outputs(b_bytes, names, feeds)
        except OcrgraftError:
            return None
        for value in order[start : start + CHUNK]:
            compared += 1
            x, y = got_b.get(value.name), got_a.get(value.name)
            if x is None or y is None or x.shape != y.shape:
                continue
            diff = diff_arrays(value.name, x, y, tol)
            if not diff.ok:
                node = value.producer()
                return Divergence(
                    value.name,
                    node.name or "?",
                    node.op_type,
                    [f"{i.name} {_shape({**feeds, **got_b}, i)}" for i in node.inputs if i is not None],
                    diff.max_abs,
                    compared,
                )
    return None


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
