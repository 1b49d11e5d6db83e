"""eliminate-unit-reductions: reductions over unit axes removed (what simplifiers do), never fixing a dynamic
dimension."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.passes._edit import (
    Editor,
    axes_of,
    dims,
    remove_unused,
)
from ocrgraft.passes.base import Pass, register

_ONNX = ("", "ai.onnx")


_UNIT_REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")


@register
class EliminateUnitReductions(Pass):
    """Remove reductions over axes of size 1: they are the identity (keepdims) or a Squeeze.

    AdaptiveAvgPool2d((None, 1)) over a map already 1 high (the DTRB recognizer at height 32) exports as a
    ReduceMean over a static axis of 1. Mean, sum, max, min and product of one element are that element."""

    name = "eliminate-unit-reductions"
    needs_shapes = True

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in _UNIT_REDUCTIONS for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        edit, count, dead = Editor(model, self.name), 0, []
        for node in list(model.graph):
            axes = _unit_axes(node)
            if axes is None:
                continue
            edit.at(node)
            x = node.inputs[0]
            edit.replace(
                node.outputs[0], x if node.attributes.get_int("keepdims", 1) else edit.squeeze(x, axes)
            )
            dead.append(node)
            count += 1
        remove_unused(model.graph, dead)
        return count


def _unit_axes(node: ir.Node) -> list[int] | None:
    """The reduced axes (non-negative) if the node is a reduction over static axes of size 1 only."""
    if node.op_type not in _UNIT_REDUCTIONS or node.domain not in _ONNX:
        return None
    shape = dims(node.inputs[0])
    axes = axes_of(node)
    if shape is None or axes is None or not axes:  # no axes: all of them, or none (noop_with_empty_axes)
        return None
    axes = sorted(a % len(shape) for a in axes)
    return axes if all(shape[a] == 1 for a in axes) else None
